"""After flashing, `wait_for_repl` must recognise a live MicroPython and name a
dead port; `mpseal monitor` shows what the board prints and quits on Ctrl-C.
The board is the real MicroPython unix port behind a pseudo-terminal."""
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import BIN, MICROPYTHON
from flash_fakes import EmptyPty, MicroPythonOnPty
from mpseal_tools.board.connection import BoardError
from mpseal_tools.board.monitor import wait_for_repl


def test_wait_for_repl_sees_a_live_micropython():
    board = MicroPythonOnPty(MICROPYTHON)
    try:
        banner = wait_for_repl(board.port, 115200, timeout=10)
    finally:
        board.close()
    assert b"MicroPython" in banner and banner.endswith(b">>> ")


def test_wait_for_repl_on_a_silent_port_says_what_to_do():
    port = EmptyPty()
    try:
        with pytest.raises(BoardError) as info:
            wait_for_repl(port.port, 115200, timeout=1.5)
    finally:
        port.close()
    assert "no MicroPython prompt on %s" % port.port in str(info.value)
    assert "reset button" in str(info.value)


def test_monitor_prints_board_output_and_quits_on_ctrl_c():
    port = EmptyPty()
    # Started the way a script's `cmd &` or nohup starts it: SIGINT ignored
    # and inherited. Ctrl-C must still end the monitor.
    monitor = subprocess.Popen([os.path.join(BIN, "mpseal"), "monitor", "--port", port.port],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 20
        line = b""
        while b"monitoring" not in line and time.monotonic() < deadline:
            line += monitor.stderr.read1(200)
        assert b"monitoring %s at 115200 baud" % port.port.encode() in line
        said = b"boot: mpseal firmware 0.1\r\nreading seq=1 sent\r\n"
        os.write(port.master, said)
        shown = b""  # wait until the monitor has shown it all (not a sleep: a loaded machine is slow)
        while shown != said and time.monotonic() < deadline + 20:
            if select.select([monitor.stdout], [], [], 1.0)[0]:
                shown += monitor.stdout.read1(200)
        monitor.send_signal(signal.SIGINT)
        out, err = monitor.communicate(timeout=10)
        out = shown + out
    finally:
        if monitor.poll() is None:
            monitor.kill()
        port.close()
    assert out == b"boot: mpseal firmware 0.1\r\nreading seq=1 sent\r\n"
    assert monitor.returncode == 0 and b"monitor closed" in err and b"Traceback" not in err


def test_monitor_on_a_missing_port_is_a_clear_error():
    result = subprocess.run([os.path.join(BIN, "mpseal"), "monitor", "--port", "/dev/ttyNOPE0"],
                            capture_output=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith(b"mpseal: cannot open serial port /dev/ttyNOPE0")
