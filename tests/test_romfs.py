"""ROMFS (tools/mpseal_tools/romfs.py): `mpseal build` makes the image for
boards whose MicroPython has a ROMFS partition, the unix port mounts it with
vfs.VfsRom and imports the firmware from /rom, bytecode from it takes less
heap than the same .mpy in /lib, and deploy picks the way the board has.

The chip's ROMFS partition cannot exist here: the unix port has VfsRom but no
memory-mapped flash, so the image is a bytearray at the front of a heap made
larger by exactly its size (romfs.firmware_heap, checked below)."""
import hashlib
import json
import subprocess

import pytest

from conftest import MICROPYTHON
from mpseal_tools import romfs
from mpseal_tools.sim import unix_board
from mpseal_tools.bench.firmware import boot_free
from mpseal_tools.board.connection import BoardError
from mpseal_tools.build import build
from mpseal_tools.deploy import deploy

KEY = bytes(range(32))
CONFIG = {"device_id": 1, "key": KEY.hex(), "receiver": {"host": "127.0.0.1", "udp_port": 9}, "interval_s": 0}


@pytest.fixture(scope="module")
def wemos_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("romfs_build")
    return out / "wemos", build("wemos", out_root=str(out), simulator=True)


def test_build_writes_the_image_for_a_romfs_board_and_lists_what_it_covers(wemos_build):
    out, manifest = wemos_build
    rom = manifest["romfs"]
    image = (out / rom["path"]).read_bytes()
    assert image.startswith(romfs.HEADER) and rom["size"] == len(image)
    lib = sorted(f["path"] for f in manifest["files"] if f["path"].startswith("/lib/"))
    assert sorted(rom["covers"]) == lib and "/lib/app.mpy" in lib and "/lib/mpseal/packet.mpy" in lib
    # each module's /rom compile, as the image holds it (signed by `mpseal release`: docs/ota.md "ROMFS boards")
    held = romfs.image_files(MICROPYTHON, str(out / rom["path"]))
    assert {"/rom" + p[4:]: f["sha256"] for p, f in rom["files"].items()} == held
    # boot.py and main.py stay files: MicroPython runs them by name from /
    assert {"/boot.py", "/main.py"} <= {f["path"] for f in manifest["files"]} - set(rom["covers"])


def test_a_board_without_romfs_gets_no_image(tmp_path):
    manifest = build("esp01", out_root=str(tmp_path))
    assert "romfs" not in manifest and not (tmp_path / "esp01" / romfs.IMAGE).exists()


def test_the_unix_port_imports_the_built_image_from_rom(wemos_build, tmp_path):
    """The xtensa build's image (bytecode-only .mpy loads on x86 too) mounted
    with vfs.VfsRom at /rom: modules come from it, with their /rom names."""
    out, manifest = wemos_build
    script = (
        "import sys, vfs\n"
        "f = open(%r, 'rb'); rom = f.read(); f.close()\n"
        "vfs.mount(vfs.VfsRom(rom), '/rom')\n"
        "sys.path[:] = %s\n"
        "import sensors, mpseal.packet, hw\n"
        "print(sensors.__file__, mpseal.packet.__file__, hw.SIMULATED, sorted(__import__('os').listdir('/rom'))[:3])\n"
    ) % (str(out / romfs.IMAGE), romfs.SYS_PATH)
    result = subprocess.run([MICROPYTHON, "-X", "heapsize=200k", "-c", script],  # the image is in this heap
                            capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["/rom/sensors.mpy", "/rom/mpseal/packet.mpy", "True"], result.stdout


def test_the_enlarged_heap_leaves_the_firmware_the_heap_it_would_have(tmp_path):
    size = 32000
    heap, offset = romfs.firmware_heap(MICROPYTHON, unix_board.TARGET_HEAP, size)
    free_plain, _ = romfs._probe(MICROPYTHON, 48 * 1024, "")
    free_image, _ = romfs._probe(MICROPYTHON, heap, "_rom = bytearray(%d)\n" % size)
    assert free_plain <= free_image < free_plain + 128, (free_plain, free_image)  # to a few 16-byte blocks
    assert size <= offset < size + 128  # what the STATS heap figures leave out


def test_bytecode_from_romfs_takes_less_heap_than_the_same_mpy_in_lib():
    """The point of ROMFS, measured: the same firmware and config, heap free
    after boot (make bench prints the figures per configuration)."""
    in_rom, in_lib = boot_free(CONFIG, rom=True), boot_free(CONFIG, rom=False)
    assert in_rom is not None and in_lib is not None
    assert in_rom > in_lib + 8000, (in_rom, in_lib)


def test_the_simulated_board_runs_from_romfs_with_the_flash_holding_only_its_own_files(tmp_path):
    flash = tmp_path / "flash"
    unix_board.install(flash, dict(CONFIG, max_readings=3), rom=True)
    assert {"boot.py", "config.json", "main.py"} <= {p.name for p in flash.iterdir()}
    assert not list(flash.rglob("*.mpy"))  # every module is in the image
    assert unix_board.romfs_image(flash).read_bytes().startswith(romfs.HEADER)
    board = unix_board.Board(flash).start()
    board.wait(60)
    assert board.stats and board.stats["readings"] == 3 and board.stats["errors"] == 0, board.lines[-10:]
    assert 0 < board.stats["heap_live"] < 48 * 1024  # the image's block is not counted


class FakeBoard:
    """MOCK of a board connection (the ROMFS partition is hardware): answers
    the ROMFS probe, records what deploy does."""
    description = "the fake board"

    def __init__(self, has_romfs, transport=None):
        self.has_romfs = has_romfs
        if transport is not None:
            self.transport = transport
        self.sent = []
        self.files = {}

    def eval_repr(self, code):
        assert code == romfs.ROMFS_PROBE
        return self.has_romfs

    def hashes(self, paths):
        return {path: hashlib.sha256(self.files[path]).hexdigest() if path in self.files else None for path in paths}

    def free_bytes(self):
        return 10 ** 7

    def mkdir(self, path):
        pass

    def put_file(self, path, data, progress=None, make_parents=True):
        self.sent.append(path)
        self.files[path] = data

    def soft_reset(self):
        pass


def test_deploy_sends_the_lib_files_to_a_board_without_romfs(wemos_build):
    out, manifest = wemos_build
    board = FakeBoard(has_romfs=False)
    deploy(board, str(out), manifest, reset=False)
    assert "/lib/app.mpy" in board.sent and "/boot.py" in board.sent


def test_deploy_to_a_romfs_board_needs_the_serial_connection(wemos_build):
    out, manifest = wemos_build
    with pytest.raises(BoardError, match="ROMFS partition, which only the USB serial connection"):
        deploy(FakeBoard(has_romfs=True), str(out), manifest, reset=False)


def test_deploy_writes_the_image_and_skips_the_files_it_covers(wemos_build, monkeypatch):
    out, manifest = wemos_build
    written = []
    monkeypatch.setattr(romfs, "deploy", lambda transport, path: written.append(open(path, "rb").read()))
    board = FakeBoard(has_romfs=True, transport=object())
    deploy(board, str(out), manifest, reset=False)
    assert written == [(out / romfs.IMAGE).read_bytes()]
    # /ota_versions.mpy: the OTA first stage, at the root on every board (docs/ota.md)
    assert sorted(board.sent) == ["/boot.py", "/main.py", "/ota_versions.mpy"], board.sent


def test_manifest_is_json_with_the_image_entry(wemos_build):
    out, _ = wemos_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["romfs"]["path"] == romfs.IMAGE
