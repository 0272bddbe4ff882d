"""Interop both ways between the real MicroPython unix port and CPython, with
random IVs from each side's os.urandom (not the fixed vector IVs)."""
import os

import mpseal
from mpseal import control, payload

from conftest import REPO, SHARED, MPY_CROSS

KEY = os.urandom(32)
SCRIPT = os.path.join(REPO, "tests", "mp", "interop.py")


def test_sealed_on_micropython_opened_on_cpython(micropython, shared_mpy):
    result = micropython([SCRIPT, "seal", KEY.hex(), "50"], env_path=shared_mpy)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split()
    assert len(lines) == 50 and len(set(lines)) == 50
    window = mpseal.ReplayWindow()
    for seq, line in enumerate(lines, start=1):
        header, data = mpseal.unseal(bytes.fromhex(line), KEY, window=window)
        window.update(header.seq)
        assert header.seq == seq and header.device_id == 9
        assert payload.decode_values(data)["temperature"] == round(20 + seq / 100, 2)


def test_sealed_on_cpython_opened_on_micropython(micropython, shared_mpy):
    packets = [mpseal.seal(KEY, 9, seq, control.encode_ack(100 + seq, [control.set_interval(60 * seq)]), type=mpseal.TYPE_ACK) for seq in range(1, 21)]
    tampered = bytearray(packets[3])
    tampered[20] ^= 0x80
    reading = mpseal.seal(KEY, 9, 99, b"reading")  # wrong direction for a board
    feed = packets + [bytes(tampered), packets[0], reading]
    result = micropython([SCRIPT, "open", KEY.hex()], env_path=shared_mpy, input="\n".join(p.hex() for p in feed).encode())
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    for seq, line in enumerate(lines[:20], start=1):
        host_seq, acked, commands = line.split()
        assert (int(host_seq), int(acked)) == (seq, 100 + seq)
        assert control.decode_commands(bytes.fromhex(commands)) == [control.set_interval(60 * seq)]
    assert lines[20:] == ["ERR bad_tag", "ERR replay", "ERR bad_type"]


def test_every_shared_module_compiles_for_xtensa(tmp_path):
    import subprocess

    sources = sorted(f for f in os.listdir(os.path.join(SHARED, "mpseal")) if f.endswith(".py"))
    assert "packet.py" in sources
    for name in sources:
        out = tmp_path / (name[:-3] + ".mpy")
        result = subprocess.run([MPY_CROSS, "-march=xtensa", "-o", str(out), os.path.join(SHARED, "mpseal", name)], capture_output=True)
        assert result.returncode == 0, "%s: %s" % (name, result.stderr.decode())
        assert out.stat().st_size > 0
