# mpseal — every target installs what it needs first (.venv from PyPI, Debian
# packages via apt-get when missing and we are root), so a fresh clone works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BOARD  ?= wemos
SECONDS ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all venv npm-deps system-deps oracle test test-fast lint bench demo build deploy webrepl-upload flash provision monitor vectors clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (log: $(VENV)/install.log) ..."
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
	  || { tail -30 $(VENV)/install.log; echo "mpseal: installing Python packages failed (full log: $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

# uPlot (the page's chart library) from npm into the venv (.venv/node_modules,
# git-ignored); the receiver serves it from there (mpseal_host/web.py). Never
# copied into the repo. The page still works, without charts, when it is absent.
UPLOT_VERSION := 1.6.32
NPM_STAMP := $(VENV)/node_modules/uplot/.installed-$(UPLOT_VERSION)
$(NPM_STAMP): | $(STAMP) system-deps
	@echo "installing uplot@$(UPLOT_VERSION) from npm into $(VENV)/node_modules ..."
	@npm install --prefix $(VENV) --no-save --no-audit --no-fund --loglevel=error uplot@$(UPLOT_VERSION) > $(VENV)/npm.log 2>&1 \
	  || { tail -20 $(VENV)/npm.log; echo "mpseal: installing uplot from npm failed (log: $(VENV)/npm.log)"; exit 1; }
	@touch $(NPM_STAMP)

npm-deps: $(NPM_STAMP)

# Debian packages the tests drive for real: Chromium (web page test),
# gammu-smsd with the dummy phone driver (SMS path), systemd-analyze (the
# service unit), mosquitto (MQTT / Home Assistant publisher), prometheus for
# its promtool (/metrics check), npm + nodejs (uPlot for the page; the third-party
# LoRaWAN decoder, below; mosquitto is also the broker between the
# LoRaWAN network-server stand-in and `mpseal ttn`) and the
# PostgreSQL server (storage tests start a throwaway cluster).
# Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v gammu-smsd >/dev/null 2>&1 || missing="$$missing gammu gammu-smsd"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null 2>&1 || missing="$$missing mosquitto"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "mpseal: missing Debian packages:$$missing (run 'sudo apt-get install$$missing')"; exit 1; fi; \
	fi

# npm lora-packet: an independent LoRaWAN implementation the tests decode the
# board's frames with (tools/oracle/package.json pins it; node_modules is ignored).
ORACLE := tools/oracle/node_modules/.installed
$(ORACLE): tools/oracle/package.json tools/oracle/package-lock.json | system-deps
	@cd tools/oracle && npm ci --no-audit --no-fund --silent > /dev/null \
	  || { echo "mpseal: npm install in tools/oracle failed (lora-packet)"; exit 1; }
	@touch $(ORACLE)

oracle: $(ORACLE)

test: $(STAMP) system-deps $(NPM_STAMP) $(ORACLE)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

lint: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_board_api_check.py

bench: $(STAMP) system-deps
	$(BIN)/python -m mpseal_tools.bench

demo: $(STAMP)
	$(BIN)/python -m mpseal_tools.demo $(if $(SECONDS),--seconds $(SECONDS))

vectors: $(STAMP)
	$(BIN)/python -m mpseal_tools.vectors --write tests/vectors

build: $(STAMP)
	$(BIN)/mpseal build --board $(BOARD) $(if $(SIMULATOR),--simulator)

deploy: $(STAMP)
	$(BIN)/mpseal deploy --board $(BOARD) $(if $(PORT),--port $(PORT)) --tool $(or $(DEPLOY_TOOL),mpremote) $(if $(CLEAN),--clean)

webrepl-upload: $(STAMP)
	$(BIN)/mpseal webrepl upload --board $(BOARD) --host $(HOST) $(if $(PASSWORD),--password $(PASSWORD))

flash: $(STAMP)
	$(BIN)/mpseal flash --board $(BOARD) $(if $(PORT),--port $(PORT)) $(if $(FIRMWARE),--firmware $(FIRMWARE)) $(if $(DRY_RUN),--dry-run)

provision: $(STAMP)
	$(BIN)/mpseal provision $(DEVICE) $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST)) $(if $(filter command line,$(origin BOARD)),--board $(BOARD)) $(foreach s,$(SENSORS),--sensor $(s)) $(if $(FORCE),--force)

monitor: $(STAMP)
	$(BIN)/mpseal monitor $(if $(PORT),--port $(PORT))

clean:
	rm -rf build .pytest_cache .hypothesis
