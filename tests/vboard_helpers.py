"""Starts `mpseal vboard` as a user would and tells tests where it listens."""
import os
import threading
import subprocess

from mpseal_tools.processes import stop_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPSEAL = os.path.join(REPO, ".venv", "bin", "mpseal")
START_DEADLINE_S = 60


class RunningVBoard:
    def __init__(self, flash_dir, fs_size="256k", password=None):
        self.flash = str(flash_dir)
        args = [MPSEAL, "vboard", "--flash", self.flash, "--fs-size", fs_size]
        if password:
            args += ["--webrepl", "127.0.0.1:0", "--password", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = self._field("vboard: /dev/")
        self.webrepl = self._field("vboard: webrepl ws://").rstrip("/") if password else None

    def _field(self, prefix):
        # A deadline on the start-up line too: a board that never starts fails the test, not hangs it.
        lines = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_DEADLINE_S)
        if not lines:
            self.stop()
            raise RuntimeError("vboard printed nothing in %d s" % START_DEADLINE_S)
        line = lines[0].strip()
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError("vboard did not start: %r %s" % (line, self.proc.stderr.read()))
        return line.split("//")[-1] if "ws://" in prefix else line.split(": ", 1)[1]

    def stop(self):
        stop_process(self.proc)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
