"""`mpseal flash`: the dry-run commands match MicroPython's documented ESP8266
invocation for every board; images are checked; esptool failures become our
one-line errors (against pseudo-terminals: no board can be plugged in here)."""
import dataclasses
import hashlib
import json
import http.server
import os
import select
import shlex
import subprocess
import threading

import pytest

from conftest import BIN, REPO, mpseal_cli
from flash_fakes import EmptyPty, FakeEsp32Rom
from mpseal_tools.board.flash import FlashError
from mpseal_tools.board.catalog import load_boards
from mpseal_tools.board.flash import resolve_image

BOARDS = load_boards(os.path.join(REPO, "boards.yaml"))
FAKE_IMAGE = bytes([0xE9]) + b"\x03\x02\x40" + os.urandom(4092)  # starts like an ESP8266 boot image
# MicroPython's ESP8266 page: "esptool --port PORT erase_flash", then
# "esptool --port PORT --baud 460800 write_flash --flash_size=detect 0 image.bin",
# adding "-fm dio" (or dout) for boards whose flash needs it.
EXPECTED_MODE = {"wemos": "dio", "nodemcu": "dio", "esp01": "dout", "esp8266-generic": None}


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(FAKE_IMAGE)
    return str(path)


def commands_of(stdout):
    return [shlex.split(line) for line in stdout.decode().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("name", sorted(EXPECTED_MODE))
def test_dry_run_prints_the_documented_invocation(name, image):
    board = BOARDS[name]
    result = mpseal_cli("flash", "--board", name, "--port", "/dev/ttyUSB7", "--firmware", image, "--dry-run")
    assert result.returncode == 0, result.stderr
    check, erase, write = commands_of(result.stdout)
    prefix = [os.path.join(BIN, "python"), "-m", "esptool", "--chip", "esp8266", "--port", "/dev/ttyUSB7",
              "--baud", str(board.flash_baud)]
    assert check == prefix + ["flash-id"]
    assert erase == prefix + ["erase-flash"]
    assert write[: len(prefix)] == prefix and write[len(prefix)] == "write-flash"
    options = write[len(prefix) + 1 : -2]
    assert "--flash-size=detect" in options
    mode = EXPECTED_MODE[name]
    if mode:
        assert options[options.index("--flash-mode") + 1] == mode
    else:
        assert "--flash-mode" not in options
    assert write[-2:] == ["0x0", image]  # the image goes at address 0


def test_dry_run_without_firmware_names_the_cached_download_and_how_it_is_checked(tmp_path):
    env_cache = str(tmp_path / "cache")
    result = subprocess.run([os.path.join(BIN, "mpseal"), "flash", "--board", "esp01", "--port", "/dev/ttyUSB0",
                             "--dry-run"], capture_output=True, env=dict(os.environ, MPSEAL_CACHE_DIR=env_cache))
    assert result.returncode == 0
    out = result.stdout.decode()
    write = commands_of(result.stdout)[-1]
    assert write[-1] == os.path.join(env_cache, "ESP8266_GENERIC-FLASH_1M-20251209-v1.27.0.bin")
    if not BOARDS["esp01"].firmware.pinned:
        assert "trust on first use" in out and "pins.json" in out
    assert not os.path.exists(env_cache) or os.listdir(env_cache) == []  # a dry run downloads nothing


def test_dry_run_does_nothing_to_the_port(image):
    port = EmptyPty()
    try:
        result = mpseal_cli("flash", "--board", "wemos", "--port", port.port, "--firmware", image, "--dry-run")
        assert result.returncode == 0
        assert not select.select([port.master], [], [], 0.3)[0], "a dry run wrote to the serial port"
    finally:
        port.close()


def test_missing_and_bogus_images_are_refused(tmp_path):
    missing = mpseal_cli("flash", "--board", "wemos", "--port", "/dev/null", "--firmware", str(tmp_path / "no.bin"))
    assert missing.returncode == 1
    assert b"mpseal: firmware image" in missing.stderr and b"does not exist" in missing.stderr
    text = tmp_path / "notes.bin"
    text.write_text("not firmware")
    bogus = mpseal_cli("flash", "--board", "wemos", "--port", "/dev/null", "--firmware", str(text))
    assert bogus.returncode == 1 and b"is not an ESP8266 firmware image" in bogus.stderr


class ImageServer:
    """A local web server standing in for micropython.org (loopback only)."""

    def __init__(self, body):
        self.requests = 0
        self.body = body
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def board(self, sha256):
        base = BOARDS["wemos"]
        image = dataclasses.replace(base.firmware, sha256=sha256,
                                    url="http://127.0.0.1:%d/%s" % (self.httpd.server_port, base.firmware.file))
        return dataclasses.replace(base, firmware=image)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ImageServer(FAKE_IMAGE)
    yield s
    s.close()


def test_download_is_checked_and_cached_once(server, tmp_path):
    board = server.board(hashlib.sha256(FAKE_IMAGE).hexdigest())
    progress = []
    path = resolve_image(board, cache=str(tmp_path), progress=progress.append)
    assert open(path, "rb").read() == FAKE_IMAGE and os.path.dirname(path) == str(tmp_path)
    assert any("downloading" in line for line in progress)
    assert resolve_image(board, cache=str(tmp_path)) == path
    assert server.requests == 1
    with open(path, "r+b") as f:  # a damaged cache entry is fetched again, never flashed
        f.write(b"\x00")
    assert open(resolve_image(board, cache=str(tmp_path)), "rb").read() == FAKE_IMAGE
    assert server.requests == 2


def test_unpinned_image_is_trusted_on_first_use_then_enforced(server, tmp_path):
    board = server.board("UNPINNED")
    progress = []
    path = resolve_image(board, cache=str(tmp_path), progress=progress.append)
    digest = hashlib.sha256(FAKE_IMAGE).hexdigest()
    assert open(path, "rb").read() == FAKE_IMAGE
    assert any("trusting" in line and digest in line for line in progress)  # said, with the value to compare
    pins = json.load(open(tmp_path / "pins.json"))
    assert pins == {board.firmware.file: digest}
    os.unlink(path)  # the cache is gone, the pin stays: the next download must be the same bytes
    server.body = FAKE_IMAGE[:-1] + b"\x01"
    with pytest.raises(FlashError) as info:
        resolve_image(board, cache=str(tmp_path))
    assert "checksum mismatch" in str(info.value) and "pins.json" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["pins.json"]  # the changed image is not kept


def test_checksum_mismatch_aborts_and_keeps_nothing(server, tmp_path):
    board = server.board("0" * 64)
    with pytest.raises(FlashError) as info:
        resolve_image(board, cache=str(tmp_path))
    message = str(info.value)
    assert "checksum mismatch" in message and "0" * 64 in message
    assert hashlib.sha256(FAKE_IMAGE).hexdigest() in message and "nothing was flashed" in message
    assert os.listdir(tmp_path) == []


def flash_against(fake, board, image):
    """Runs a real (not dry) `mpseal flash` at a stand-in port; returns (exit code, stdout, stderr)."""
    try:
        result = mpseal_cli("flash", "--board", board, "--port", fake.port, "--firmware", image,
                            "--connect-attempts", "2")
    finally:
        fake.close()
    assert b"Traceback" not in result.stderr
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_esptool_against_a_silent_port_gives_our_error(image):
    port = EmptyPty()
    code, out, err = flash_against(port, "wemos", image)
    assert code == 1
    assert err.startswith("mpseal: no ESP8266 bootloader answered on %s" % port.port) and "GPIO0" in err, err
    assert "[1/4] check the chip" in out  # progress shows which step failed


def test_wrong_chip_is_named_before_anything_is_erased(image):
    code, out, err = flash_against(FakeEsp32Rom(), "nodemcu", image)
    assert code == 1
    assert "is an ESP32, not an ESP8266" in err, err
    assert "[2/4]" not in out  # stopped at the check, before erase-flash


def test_no_port_found_says_how_to_name_one(image):
    from serial.tools import list_ports

    if any((p.vid, p.pid) in BOARDS["wemos"].usb_ids for p in list_ports.comports()):
        pytest.skip("a board with a wemos USB bridge is plugged in")
    result = mpseal_cli("flash", "--board", "wemos", "--firmware", image)
    assert result.returncode == 1
    assert b"no serial port looks like the wemos board" in result.stderr and b"PORT=" in result.stderr
