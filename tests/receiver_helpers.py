"""A real `mpseal receive` subprocess on free loopback ports, for the receiver tests."""
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request

from conftest import BIN

MPSEAL = os.path.join(BIN, "mpseal")


def _address(text):
    host, port = text.strip().rsplit(":", 1)
    return host, int(port)


class RunningReceiver:
    """api: the API listener's HOST:PORT (loopback: no token needed); udp and
    http: the ingest listeners (another receiver's ports with --reuse-port)."""

    def __init__(self, db, extra_args=(), env=None, udp="127.0.0.1:0", http="127.0.0.1:0", api="127.0.0.1:0",
                 preexec_fn=None):
        self.db = str(db)
        self.proc = subprocess.Popen(
            [MPSEAL, "receive", "--db", self.db, "--udp", udp, "--http", http, "--api", api] + list(extra_args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(os.environ, **env),
            preexec_fn=preexec_fn,
            start_new_session=True,  # stop() can end the receiver with its read-pool workers
        )
        # "mpseal receive: listening on udp H:P, http H:P, api http://H:P/, database ..."
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise AssertionError("receiver did not start: %r %s" % (line, self.proc.stderr.read()))
        self.udp = _address(line.split("udp ")[1].split(",")[0])
        self.http = _address(line.split("http ")[1].split(",")[0])
        self.base = line.split("api http://")[1].split("/")[0]
        self.url = "http://%s" % self.base  # the API
        self.ingest_url = "http://%s:%d" % self.http
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def udp_exchange(self, packet, timeout=3.0):
        """Sends one datagram; returns the reply datagram or None (silence)."""
        self.sock.settimeout(timeout)
        self.sock.sendto(packet, self.udp)
        try:
            return self.sock.recvfrom(4096)[0]
        except socket.timeout:
            return None

    def post(self, body, content_type="application/octet-stream", path="/api/ingest"):
        """POSTs to the ingest listener; returns (status, body bytes, headers)."""
        request = urllib.request.Request(self.ingest_url + path, data=body, method="POST", headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def get_raw(self, path):
        """Returns (status, body bytes, headers)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def get(self, path, headers=None):
        """GETs from the API listener; returns (status, parsed JSON)."""
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers or {}), timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def alive(self):
        return self.proc.poll() is None

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the receiver and its workers
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=20):
        """SIGTERM; returns (exit code, stdout rest, stderr)."""
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        else:  # killed (kill -9 tests): its read-pool workers may outlive it, holding our pipes
            self._kill_group()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err
