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


def mosquitto_path():
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("mosquitto is not installed: run `make system-deps` (Debian package mosquitto)")


class Mosquitto:
    """A real mosquitto broker on an ephemeral loopback port, its own config
    and no persistence, stopped by close()."""

    def __init__(self, folder, port=None):
        import socket

        from mpseal_tools.receiver_proc import free_port

        os.makedirs(folder, exist_ok=True)
        self.port = port or free_port()
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file %s\n" % (self.port, os.path.join(folder, "mosquitto.log")))
        self.proc = subprocess.Popen([mosquitto_path(), "-c", self.config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import time

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start (log: %s)" % folder)
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    broker = Mosquitto(str(tmp_path_factory.mktemp("mosquitto")))
    yield broker
    broker.close()
