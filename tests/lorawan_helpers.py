"""Shared pieces of the LoRaWAN tests: the third-party decoder (npm
lora-packet, installed by `make oracle` into tools/oracle/node_modules) and
the board's own lorawan.py imported on CPython."""
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORACLE_DIR = os.path.join(REPO, "tools", "oracle")


def board_module(name):
    """A firmware module that has no MicroPython-only imports (lorawan.py,
    region_eu868.py), imported on CPython for cross-checks."""
    firmware = os.path.join(REPO, "firmware")
    if firmware not in sys.path:
        sys.path.insert(0, firmware)
    return __import__(name)


class Oracle:
    """npm lora-packet behind a JSON-lines pipe (tools/oracle/decode.js)."""

    def __init__(self):
        node = shutil.which("node") or shutil.which("nodejs")
        if not node or not os.path.isdir(os.path.join(ORACLE_DIR, "node_modules", "lora-packet")):
            pytest.fail("npm lora-packet is not installed: run `make oracle` (it needs Debian npm)")
        self.proc = subprocess.Popen([node, os.path.join(ORACLE_DIR, "decode.js")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        assert "error" not in answer, answer
        return answer

    def decode(self, phy, nwk, app, fcnt):
        return self.ask(op="decode", phy=phy.hex(), nwk=nwk.hex(), app=app.hex(), fcnt=fcnt)

    def encode_down(self, dev_addr, fcnt, fport, payload, nwk, app):
        return bytes.fromhex(self.ask(op="encode_down", dev_addr="%08x" % dev_addr, fcnt=fcnt, fport=fport, payload=payload.hex(), nwk=nwk.hex(), app=app.hex())["phy"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def oracle():
    o = Oracle()
    yield o
    o.close()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """A real mosquitto for the LoRaWAN tests (tests/mqtt_helpers.py)."""
    from mqtt_helpers import Mosquitto

    broker = Mosquitto(str(tmp_path_factory.mktemp("mosquitto"))).start()
    yield broker
    broker.stop()
