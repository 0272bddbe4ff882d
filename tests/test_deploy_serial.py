"""build -> deploy over USB serial (the real mpremote and ampy) to the virtual
board; the board's flash, read back from its littlefs image, equals the
manifest, and unchanged files are not sent again."""
import hashlib
import json
import os
import shutil

import pytest

from mpseal_tools.board.connection import BoardError
from mpseal_tools.board.transports import open_board
from mpseal_tools.build import build
from mpseal_tools.deploy import deploy
from mpseal_tools.sim.vboard import read_flash_files
from vboard_helpers import RunningVBoard

BOARD = "wemos"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    manifest = build(BOARD, out_root=str(out))
    return str(out / BOARD), manifest


@pytest.fixture
def board(tmp_path):
    vb = RunningVBoard(tmp_path / "flash", fs_size="512k")
    yield vb
    vb.stop()


def copy_build(built, tmp_path):
    build_dir = str(tmp_path / "build")
    shutil.copytree(built[0], build_dir)
    return build_dir, json.loads(json.dumps(built[1]))


def assert_flash_matches(flash_dir, manifest):
    files = read_flash_files(flash_dir)
    for f in manifest["files"]:
        assert f["path"] in files, "%s missing on the board" % f["path"]
        assert hashlib.sha256(files[f["path"]]).hexdigest() == f["sha256"], f["path"]


def change_file(build_dir, manifest, path, extra):
    local = os.path.join(build_dir, path.lstrip("/"))
    with open(local, "ab") as f:
        f.write(extra)
    entry = next(f for f in manifest["files"] if f["path"] == path)
    with open(local, "rb") as f:
        data = f.read()
    entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["mpremote", "ampy"])
def test_deploy_sends_only_what_changed(tool, built, board, tmp_path):
    build_dir, manifest = copy_build(built, tmp_path)
    if tool == "ampy":
        # ampy soft-resets around every file and writes 32 bytes per command
        # (about 1.5 s a file): a few files prove the same behaviour.
        manifest["files"] = [f for f in manifest["files"] if f["path"] in ("/boot.py", "/lib/mpseal/rng.mpy", "/lib/hw.mpy")]
    with open_board(port=board.port, tool=tool) as conn:
        first = deploy(conn, build_dir, manifest, reset=False)
    assert sorted(first.sent) == sorted(f["path"] for f in manifest["files"])
    assert first.bytes_sent == sum(f["size"] for f in manifest["files"])
    assert_flash_matches(board.flash, manifest)

    with open_board(port=board.port, tool=tool) as conn:
        second = deploy(conn, build_dir, manifest, reset=False)
    assert second.sent == [] and second.bytes_sent == 0

    change_file(build_dir, manifest, "/boot.py", b"# changed\n")
    with open_board(port=board.port, tool=tool) as conn:
        third = deploy(conn, build_dir, manifest)
    assert third.sent == ["/boot.py"]
    assert_flash_matches(board.flash, manifest)


@pytest.mark.slow
def test_clean_removes_stale_code_but_keeps_the_boards_data(built, board, tmp_path):
    build_dir, manifest = copy_build(built, tmp_path)
    with open_board(port=board.port) as conn:
        conn.put_file("/lib/old_module.mpy", b"stale")
        conn.put_file("/config.json", b"{}")
        deploy(conn, build_dir, manifest, reset=False)
        assert "/lib/old_module.mpy" in read_flash_files(board.flash)  # without --clean it stays
        report = deploy(conn, build_dir, manifest, clean=True, reset=False)
    assert report.removed == ["/lib/old_module.mpy"]
    files = read_flash_files(board.flash)
    assert "/lib/old_module.mpy" not in files and files["/config.json"] == b"{}"


@pytest.mark.slow
def test_full_flash_gives_a_clear_error(built, tmp_path):
    vb = RunningVBoard(tmp_path / "tiny", fs_size="32k")  # 8 blocks: the build cannot fit
    try:
        build_dir, manifest = copy_build(built, tmp_path)
        with open_board(port=vb.port) as conn:
            with pytest.raises(BoardError, match="flash of the board on .* is full"):
                deploy(conn, build_dir, manifest, reset=False)
            # The early size check aside, a write that runs out of space says so too.
            with pytest.raises(BoardError, match="is full while writing /big.bin"):
                conn.put_file("/big.bin", bytes(40 * 1024))
    finally:
        vb.stop()


def test_no_board_and_missing_port_are_clear_errors(tmp_path):
    with pytest.raises(BoardError, match="does not exist"):
        open_board(port="/dev/ttyUSB99")
