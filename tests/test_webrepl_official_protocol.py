"""The virtual board's WebREPL against the official client's protocol.

The client is tests/webrepl_cli_client.py: written from the behaviour of
MicroPython's official webrepl_cli.py (micropython/webrepl 1e09d9a) -- key
"foo", no version header, unmasked frames, the WA put/get records -- because
the real file cannot be fetched when CI runs (see that module's docstring).
Big and flash-filling transfers check what a board does: bounded memory
(the board's heap is 128k), ENOSPC only when the flash is really full, no
partial file, the session and the REPL usable afterwards.
"""
import os
import time

import pytest
import serial

from mpseal_tools.board.webrepl import WebReplConnection
from mpseal_tools.sim.vboard import read_flash_files
from vboard_helpers import MPSEAL, RunningVBoard
from webrepl_cli_client import OfficialStyleClient, ProtocolFailure

PASSWORD = "s3cret"
ENOSPC = 28
BLOCK = 4096


def address(vb):
    host, port = vb.webrepl.rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    vb = RunningVBoard(tmp_path_factory.mktemp("webrepl") / "flash", fs_size="512k", password=PASSWORD)
    yield vb
    vb.stop()


def connect(vb, password=PASSWORD):
    client = OfficialStyleClient(*address(vb))
    client.login(password)
    return client


def test_handshake_with_key_foo_and_unmasked_frames_is_accepted(board):
    with connect(board) as client:
        assert client.status_line.startswith(b"HTTP/1.1 101")
        assert client.version() == (1, 29, 0)


def test_put_get_round_trip_small_file(board):
    payload = os.urandom(3000) + b"\r\n\x04\x00"
    with connect(board) as client:
        assert client.put("/small.bin", payload) == 0
        assert client.get("/small.bin") == payload
    assert read_flash_files(board.flash)["/small.bin"] == payload


@pytest.mark.parametrize("size", [60 * 1024, 200 * 1024])
def test_big_files_stream_through_a_small_heap(board, size):
    payload = os.urandom(size)
    with connect(board) as client:
        started = time.monotonic()
        assert client.put("/big.bin", payload) == 0
        put_s = time.monotonic() - started
        started = time.monotonic()
        assert client.get("/big.bin") == payload
        get_s = time.monotonic() - started
    print("webrepl %d bytes: put %.2f s, get %.2f s" % (size, put_s, get_s))
    assert read_flash_files(board.flash)["/big.bin"] == payload


def test_wrong_password_is_denied_and_the_connection_closed(board):
    with connect(board, "wrong") as client:
        said = b""
        with pytest.raises(ProtocolFailure, match="closed"):  # webrepl_cli.py dies on its assert here
            while True:
                said += client.read(1, text_ok=True)
        assert said == b"\r\nAccess denied\r\n"
    with connect(board) as client:  # the right password still works afterwards
        assert client.version() == (1, 29, 0)


def test_get_of_a_missing_file_is_refused(board):
    with connect(board) as client:
        with pytest.raises(ProtocolFailure, match="WB 2"):
            client.get("/nope")
        assert client.version() == (1, 29, 0)  # session still usable


def test_a_second_concurrent_client_is_rejected(board):
    with connect(board) as first:
        with pytest.raises((ProtocolFailure, ConnectionError)):  # closed at once, before or after the handshake
            with OfficialStyleClient(*address(board)) as second:
                second.login(PASSWORD)
        assert first.version() == (1, 29, 0)


def test_flash_filling_put_fails_only_when_full_and_leaves_nothing_behind(tmp_path):
    vb = RunningVBoard(tmp_path / "flash", fs_size="128k", password=PASSWORD)
    try:
        with WebReplConnection(vb.webrepl, PASSWORD) as conn:
            free = conn.free_bytes()
        fits = os.urandom(free - 2 * BLOCK)  # littlefs keeps a block or two for the file's own metadata
        with connect(vb) as client:
            assert client.put("/fill.bin", os.urandom(free + 1)) == ENOSPC
            assert "/fill.bin" not in read_flash_files(vb.flash)  # no partial file
            assert client.put("/fits.bin", fits) == 0
            assert client.get("/fits.bin") == fits
        with WebReplConnection(vb.webrepl, PASSWORD) as conn:
            conn.remove("/fits.bin")
            assert conn.free_bytes() == free  # the failed put took nothing
    finally:
        vb.stop()


def test_failed_cli_put_leaves_no_file_and_the_repl_friendly(tmp_path):
    import subprocess

    vb = RunningVBoard(tmp_path / "flash", fs_size="64k", password=PASSWORD)
    try:
        local = tmp_path / "huge.bin"
        local.write_bytes(os.urandom(200 * 1024))
        env = dict(os.environ, MPSEAL_WEBREPL_PASSWORD=PASSWORD)
        result = subprocess.run([MPSEAL, "webrepl", "put", "--host", vb.webrepl, str(local), "/huge.bin"],
                                capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode == 1
        assert "is full while writing /huge.bin" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert "/huge.bin" not in read_flash_files(vb.flash)
        with serial.Serial(vb.port, 115200, timeout=30) as tty:  # the REPL was left friendly, not raw
            tty.write(b"6 * 7\r")
            assert tty.read_until(b"42\r\n>>> ").endswith(b"42\r\n>>> ")
    finally:
        vb.stop()
