"""`mpseal receive` as a child process on loopback, driven through its real
CLI and HTTP API: what the demo and the firmware end-to-end tests run
against. Stopping and starting it again on the same ports is how the tests
take the link down and bring it back."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mpseal_tools.processes import stop_process

MPSEAL = [sys.executable, "-m", "mpseal_tools.cli"]
START_TIMEOUT_S = 20


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BIND_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """`mpseal receive` exited: a port it was given is in use."""


class ReceiverProcess:
    def __init__(self, workdir, udp_port=None, http_port=None, api_port=None, extra_args=(), movable=False):
        """Ports not given are free ones; they, and all three with
        movable=True (the demo's defaults when free), are picked again
        should another process take one between the pick and the bind."""
        self.workdir = Path(workdir)
        self.movable = (movable or udp_port is None, movable or http_port is None, movable or api_port is None)
        self.extra_args = list(extra_args)  # more `mpseal receive` options, e.g. ["--mqtt", URL], ["--releases", DIR]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = self.workdir / "mpseal.sqlite"
        self.udp_port = udp_port or free_port(socket.SOCK_DGRAM)
        self.http_port = http_port or free_port()  # HTTP ingest: what a board is given
        self.api_port = api_port or free_port()  # API + page, loopback
        self.process = None
        self.started = False  # once: the ports are the ones boards were given
        self.log_path = self.workdir / "receiver.log"

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.api_port

    @property
    def ingest_url(self):
        """The HTTP ingest listener: where boards reach the receiver (and its --releases)."""
        return "http://127.0.0.1:%d/" % self.http_port

    def cli(self, *args, env=None):
        """Runs `mpseal ARGS --db <db>`; returns stdout, raises with stderr."""
        result = subprocess.run(MPSEAL + list(args) + ["--db", str(self.db)], capture_output=True, text=True, cwd=self.workdir,
                                env=dict(os.environ, **(env or {})))
        if result.returncode != 0:
            raise RuntimeError("mpseal %s failed: %s" % (" ".join(args), result.stderr.strip()))
        return result.stdout

    def add_device(self, name, key, device_id):
        self.cli("devices", "add", name, "--key-env", "MPSEAL_KEY", "--id", str(device_id), env={"MPSEAL_KEY": key.hex()})

    def start(self):
        # A port picked free can be taken before `mpseal receive` binds it
        # (five test suites on one machine did): then pick again, twice. Only
        # at the first start: a restart keeps the ports the boards were given.
        for _ in range(BIND_ATTEMPTS - 1 if not self.started else 0):
            try:
                return self._start()
            except PortTaken:
                kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM)
                ports = [free_port(kind) if movable else port
                         for kind, movable, port in zip(kinds, self.movable, (self.udp_port, self.http_port, self.api_port))]
                self.udp_port, self.http_port, self.api_port = ports
        return self._start()

    def _start(self):
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            MPSEAL + ["receive", "--db", str(self.db), "--udp", "127.0.0.1:%d" % self.udp_port, "--http", "127.0.0.1:%d" % self.http_port,
                      "--api", "127.0.0.1:%d" % self.api_port] + self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,  # Ctrl-C goes to the demo, which stops us after reading the API
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = self.log_path.read_text()
                last = text[-1000:].lower()
                if "cannot listen" in last and "address already in use" in last and any(self.movable):
                    raise PortTaken(text[-1000:])
                raise RuntimeError("mpseal receive exited (%s): %s" % (self.process.returncode, text[-2000:]))
            try:
                self.api("/healthz")
                self.started = True
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("mpseal receive did not answer on %s within %d s (log: %s)" % (self.url, START_TIMEOUT_S, self.log_path))

    def stop(self):
        stop_process(self.process)
        self.process = None

    def api(self, path):
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=5) as response:
            return json.loads(response.read())

    def api_text(self, path):
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=5) as response:
            return response.read().decode()

    def device(self, name):
        for device in self.api("/api/devices")["devices"]:
            if device["name"] == name:
                return device
        raise KeyError(name)

    def readings(self, name, limit=10000):
        return self.api("/api/devices/%s/readings?limit=%d" % (name, limit))["readings"]
