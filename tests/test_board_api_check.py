"""Board code against the ESP8266 MicroPython API (docs/board-api-check.md).

The check runs pyright with only the MicroPython stubs in scope. These tests
run it as a user does (`python -m mpseal_tools.check.board_api`) on the real
tree and on copies of it with deliberate mistakes put into board code."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

CHECK = [sys.executable, "-m", "mpseal_tools.check.board_api"]


def run_check(root, *files):
    return subprocess.run(CHECK + ["--root", str(root)] + list(files), capture_output=True, text=True, timeout=180)


def copy_tree(tmp_path):
    for top in ("shared", "firmware"):
        shutil.copytree(os.path.join(REPO, top), tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def append_lines(path, lines):
    """Appends lines to a module; returns the line number of each."""
    with open(path) as f:
        start = len(f.read().splitlines())
    with open(path, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
    return [start + 2 + i for i in range(len(lines))]


def board_module(root):
    """A firmware app module to put mistakes into (boot.py is in every firmware)."""
    for name in ("boot.py", "main.py", "config.py"):
        if (root / "firmware" / name).exists():
            return "firmware/" + name
    pytest.fail("no firmware module to inject into")


def test_the_real_tree_passes():
    proc = run_check(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    counts = re.search(r"(\d+) board modules, (\d+) seam names mirrored, (\d+) ignores: OK", summary)
    assert counts, summary
    assert int(counts.group(1)) >= 10  # shared/mpseal alone has 11 board modules
    print(summary)  # the counts go into the closing note of issue 8


def test_wrong_calls_in_board_code_fail_naming_file_and_line(tmp_path):
    root = copy_tree(tmp_path)
    rel = board_module(root)
    pathlib_line, conect, deepsleeep, makedirs = append_lines(
        root / rel,
        [
            "def _never_called():",
            "    import machine",
            "    import network",
            "    import os",
            "    import pathlib",
            '    network.WLAN(network.STA_IF).conect("x")',
            "    machine.deepsleeep(1)",
            '    os.makedirs("x")',
        ],
    )[4:8]
    typing_line = append_lines(root / "shared" / "mpseal" / "hkdf.py", ["import typing"])[0]
    proc = run_check(root)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert re.search(r'%s:%d: Cannot access attribute "conect" for class "WLAN"' % (rel, conect), out), out
    assert re.search(r'%s:%d: "deepsleeep" is not a known attribute of module "machine"' % (rel, deepsleeep), out), out
    # CPython's os has makedirs; the ESP8266 firmware does not
    assert re.search(r'%s:%d: "makedirs" is not a known attribute of module "os"' % (rel, makedirs), out), out
    assert "%s:%d: module \"pathlib\" does not exist on the ESP8266 port" % (rel, pathlib_line) in out, out
    # typing resolves in the stubs (they need it) but is not on the chip
    assert 'shared/mpseal/hkdf.py:%d: module "typing" does not exist on the ESP8266 port' % typing_line in out, out


def test_unix_seam_that_does_not_mirror_the_board_is_reported(tmp_path):
    root = copy_tree(tmp_path)
    unix = root / "firmware" / "hw_unix.py"
    text = unix.read_text()
    # a unix Pin.on() that wants an argument the board's Pin.on() does not
    # take, and a Pin.blink() the ESP8266 Pin does not have at all
    assert "    def on(self):" in text, "hw_unix.Pin.on changed: update this test"
    unix.write_text(text.replace("    def on(self):", "    def blink(self):\n        pass\n\n    def on(self, level):", 1))
    # a Pin.value() without the setter: the board's value() is overloaded
    # (value() reads, value(x) sets), and each overload must fit
    assert "    def value(self, value=None):" in unix.read_text(), "hw_unix.Pin.value changed: update this test"
    unix.write_text(unix.read_text().replace("    def value(self, value=None):", "    def value(self):", 1))
    lines = unix.read_text().splitlines()
    value_line = lines.index("    def value(self):") + 1
    on_line = lines.index("    def on(self, level):") + 1
    blink_line = lines.index("    def blink(self):") + 1
    proc = run_check(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r'firmware/hw_unix.py:%d: machine.Pin.on: .*\n(.*\n)*.*Extra parameter "level"' % on_line, proc.stdout), proc.stdout
    assert "firmware/hw_unix.py:%d: machine.Pin.value: the board's value(x) takes 1 positional" % value_line in proc.stdout, proc.stdout
    assert re.search(r'firmware/hw_unix.py:%d: machine.Pin.blink: Cannot access attribute "blink"' % blink_line, proc.stdout), proc.stdout


def test_an_ignore_needs_a_reason(tmp_path):
    root = copy_tree(tmp_path)
    seam = root / "shared" / "mpseal" / "aes.py"  # imports os
    bare, reasoned = append_lines(
        seam,
        [
            "BARE = os.urandom(1).hex(1, 2, 3)  # type: ignore",
            "REASONED = os.urandom(1).hex(1, 2, 3)  # type: ignore  # deliberately wrong call, for this test",
        ],
    )
    proc = run_check(root, "shared/mpseal/aes.py")
    assert "shared/mpseal/aes.py:%d: ignore without a reason" % bare in proc.stdout, proc.stdout
    assert "aes.py:%d" % reasoned not in proc.stdout, proc.stdout
    assert "2 ignores" in proc.stdout


def test_one_file_and_cpython_only_modules(tmp_path):
    root = copy_tree(tmp_path)
    # the pycryptodome side of the crypto seam imports Crypto: not board code
    proc = run_check(root, "shared/mpseal/aes_pycryptodome.py")
    assert proc.returncode == 2
    assert "not board code" in proc.stderr
    # checking one file reports that file only
    line = append_lines(root / "shared" / "mpseal" / "hmac.py", ["hashlib.md5(b'')"])[0]
    proc = run_check(root, "shared/mpseal/hmac.py")
    assert proc.returncode == 1, proc.stdout
    assert re.search(r'shared/mpseal/hmac.py:%d: "md5" is not a known attribute of module "hashlib"' % line, proc.stdout)
    assert "1 board modules" in proc.stdout
