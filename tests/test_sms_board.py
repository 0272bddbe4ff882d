"""The board's SMS transport (firmware/transport_sms.py + firmware/modem.py)
on the real MicroPython unix port against a simulated modem (a GSM radio
cannot exist here) that misbehaves on cue: garbage and truncated replies,
ERROR in the middle of AT+CMGS, SMS that are no packet, strangers."""
import json
import os
import subprocess

import mpseal
import pytest

from conftest import MICROPYTHON, MPY_CROSS, REPO
from mpseal_tools.sim.gsm_network import Network
from mpseal_tools.sim.modem import SimModem

HOST = "+4915100000002"
FIRMWARE = os.path.join(REPO, "firmware")

# Steps wait for a line on stdin, so the test can arm a fault before each.
SCRIPT = r"""
import sys, json, binascii
import transport_sms

class Cfg:
    data = {"sms": {"host_number": sys.argv[1], "ack_timeout_s": 1}}

t = transport_sms.Transport(Cfg())
packet = binascii.unhexlify(sys.argv[2])
results = []
for step in ("ok", "send_cms", "send_error", "garbage", "truncate", "after"):
    sys.stdin.readline()
    results.append([step, t.send(packet) is not None])
    print("done", step)
sys.stdin.readline()
got = t.poll()
more = t.poll()
out = {"results": results, "stats": t.counters(), "polled": binascii.hexlify(got).decode() if got else None, "more": more}
print("RESULT " + json.dumps(out))
"""


def _compiled(folder):
    # As on a board: bytecode (.mpy). Compiling source needs more than the 48k heap.
    for name in ("hw.py", "hw_unix.py", "hw_unix_uart.py", "modem.py", "transport_sms.py"):
        out = folder / (name[:-3] + ".mpy")
        subprocess.run([MPY_CROSS, "-o", str(out), "-s", name, os.path.join(FIRMWARE, name)], check=True)
    return str(folder)


def test_transport_survives_faults_and_counts_bad_sms(tmp_path):
    script = tmp_path / "sms_board.py"
    script.write_text(SCRIPT)
    lib = tmp_path / "lib"
    lib.mkdir()
    packet = mpseal.seal(os.urandom(32), 7, 1, b"\x02\x00\x10\x08\x34")
    network = Network()
    board = SimModem("+4915100000001", network)
    path = board.start()
    env = dict(os.environ, MICROPYPATH=_compiled(lib), MPSEAL_UART0=path)
    process = subprocess.Popen([MICROPYTHON, "-X", "heapsize=48k", str(script), HOST, packet.hex()], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for step in ("ok", "send_cms", "send_error", "garbage", "truncate", "after"):
            if step in ("send_cms", "send_error", "garbage", "truncate"):
                board.fail_next(step)
            process.stdin.write("\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line.startswith("done"):
                line += process.stdout.read()
            assert line.strip() == "done " + step, line + process.stderr.read()
        # what arrives for the board: two that are no packet, one stranger, one real
        board.inject(HOST, "this is not base64!")
        board.inject(HOST, "QUFB" * 50)  # 200 characters: more than one SMS
        board.inject("+4917699999999", "AQEAAAAABwAAAAE=")
        board.inject(HOST, "AgEAAAAABwAAAAE=")
        process.stdin.write("\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        board.stop()
    assert process.returncode == 0, err
    result = json.loads(out.split("RESULT ", 1)[1])
    # a reading went out whenever the modem let it; no ack comes in this test
    assert [destination for destination, _ in board.sent] == [HOST] * 3
    assert all(text == board.sent[0][1] for _, text in board.sent)
    assert len(board.sent[0][1]) == 80  # a 59-byte sealed reading is 80 base64 characters
    stats = result["stats"]
    assert stats["sms_sent"] == 3 and stats["sms_send_failed"] == 3  # send_cms, send_error, garbage
    assert stats["modem_timeouts"] >= 2  # the garbage reply and the truncated one never finished
    assert stats["sms_not_a_packet"] == 2
    assert stats["sms_unknown_sender"] == 1
    assert result["polled"] == "0201000000000700000001"  # the host's SMS, decoded, for the app to open
    assert result["more"] is None
    assert board.storage == {}  # every SMS read was deleted, refused ones too


@pytest.mark.parametrize("name", ["modem.py", "transport_sms.py"])
def test_board_modules_compile_for_xtensa(tmp_path, name):
    out = tmp_path / (name[:-3] + ".mpy")
    result = subprocess.run([MPY_CROSS, "-march=xtensa", "-o", str(out), os.path.join(FIRMWARE, name)], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert out.stat().st_size > 0
