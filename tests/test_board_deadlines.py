"""Every wait on a board has a deadline: a virtual board that goes silent in
the middle of a command (a boot.py that never returns after Ctrl-D, a program
that never ends) makes deploy and the connections fail with a clear
`mpseal: ...` message instead of hanging (mpremote's read_until on a pty,
and ampy's first read, block with no timeout of their own)."""
import subprocess
import time

import pytest

from mpseal_tools.board.connection import SILENCE_S, AmpyConnection, BoardError, MpremoteConnection
from mpseal_tools.build import build
from vboard_helpers import MPSEAL, RunningVBoard

HANG = b"while True:\n    pass\n"  # busy, prints nothing: ignores nothing but Ctrl-C
# mpremote's own timeouts (10 s) run after our SILENCE_S; a hang shows as the subprocess timeout.
DEADLINE_S = 3 * SILENCE_S + 30


@pytest.fixture
def hanging_boot(tmp_path):
    """A board whose boot.py never returns: silent after every soft reset."""
    vb = RunningVBoard(tmp_path / "flash", fs_size="512k")
    with MpremoteConnection(vb.port) as board:
        board.put_file("/boot.py", HANG)
    yield vb
    vb.stop()


def test_deploy_to_a_board_silent_after_ctrl_d_fails_with_a_clear_message(hanging_boot, tmp_path):
    out = str(tmp_path / "build")
    build("wemos", out_root=out)
    started = time.monotonic()
    result = subprocess.run([MPSEAL, "deploy", "--board", "wemos", "--port", hanging_boot.port, "--out", out,
                             "--no-progress"], capture_output=True, text=True, timeout=DEADLINE_S,
                            stdin=subprocess.DEVNULL)
    print("deploy to a silent board failed after %.1f s" % (time.monotonic() - started))
    assert result.returncode == 1
    assert result.stderr.startswith("mpseal: "), result.stderr
    assert "does not answer with MicroPython's raw REPL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("tool", [MpremoteConnection, AmpyConnection], ids=["mpremote", "ampy"])
def test_program_that_never_returns_is_lost_contact_not_a_hang(tmp_path, tool):
    vb = RunningVBoard(tmp_path / "flash", fs_size="512k")
    try:
        with tool(vb.port) as board:
            with pytest.raises(BoardError, match="lost contact with the board on .* said nothing for 10 s"):
                board.exec(HANG.decode())
    finally:
        vb.stop()
