"""Our WebREPL client against the virtual board's modwebrepl-protocol server:
upload with skip-unchanged, put/get round trip, and clear errors."""
import hashlib
import os
import socket
import subprocess

import pytest

from mpseal_tools.board.connection import BoardError
from mpseal_tools.build import build
from mpseal_tools.deploy import deploy
from mpseal_tools.sim.vboard import read_flash_files
from mpseal_tools.board.webrepl import WebReplConnection
from vboard_helpers import MPSEAL, RunningVBoard

PASSWORD = "s3cret"


@pytest.fixture
def board(tmp_path):
    vb = RunningVBoard(tmp_path / "flash", fs_size="512k", password=PASSWORD)
    yield vb
    vb.stop()


def cli(*args):
    env = dict(os.environ, MPSEAL_WEBREPL_PASSWORD=PASSWORD)
    return subprocess.run([MPSEAL] + list(args), capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_upload_matches_manifest_and_skips_unchanged_files(board, tmp_path):
    out = str(tmp_path / "build")
    manifest = build("wemos", out_root=out)
    first = cli("webrepl", "upload", "--host", board.webrepl, "--out", out, "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "%d sent" % len(manifest["files"]) in first.stderr
    files = read_flash_files(board.flash)
    for f in manifest["files"]:
        assert hashlib.sha256(files[f["path"]]).hexdigest() == f["sha256"], f["path"]
    second = cli("webrepl", "upload", "--host", board.webrepl, "--out", out, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "0 sent (0 bytes), %d unchanged" % len(manifest["files"]) in second.stderr


def test_put_get_round_trip_through_the_cli(board, tmp_path):
    payload = os.urandom(3000) + b"\n\r\x04\x00 all byte values survive"
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)
    put = cli("webrepl", "put", "--host", board.webrepl, str(local), "/data/blob.bin")
    assert put.returncode == 0, put.stderr
    assert read_flash_files(board.flash)["/data/blob.bin"] == payload
    back = tmp_path / "back.bin"
    got = cli("webrepl", "get", "--host", board.webrepl, "/data/blob.bin", str(back))
    assert got.returncode == 0, got.stderr
    assert back.read_bytes() == payload
    listing = cli("webrepl", "ls", "--host", board.webrepl, "-r")
    assert "%8d /data/blob.bin" % len(payload) in listing.stdout


def test_wrong_password_is_refused(board):
    result = subprocess.run([MPSEAL, "webrepl", "ls", "--host", board.webrepl, "--password", "wrong"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "refused the WebREPL password" in result.stderr
    with WebReplConnection(board.webrepl, PASSWORD) as conn:  # the right one still works afterwards
        assert conn.exec("print(1 + 1)").strip() == "2"


def test_refused_connection_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BoardError, match="refused the connection"):
        WebReplConnection("127.0.0.1:%d" % port, PASSWORD)


def test_missing_file_and_full_flash_are_clear_errors(tmp_path):
    vb = RunningVBoard(tmp_path / "tiny", fs_size="32k", password=PASSWORD)
    try:
        with WebReplConnection(vb.webrepl, PASSWORD) as conn:
            with pytest.raises(BoardError, match="cannot read /nope"):
                conn.get_file("/nope")
            with pytest.raises(BoardError, match="flash of the board at .* is full while writing /big.bin"):
                conn.put_file("/big.bin", bytes(40 * 1024))
            conn.put_file("/small.txt", b"still works")  # the session survives the failed write
            assert conn.get_file("/small.txt") == b"still works"
    finally:
        vb.stop()
