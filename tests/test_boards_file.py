"""boards.yaml: the real file loads; broken copies fail with the board and key named;
find_port picks the one matching USB bridge or says why it cannot."""
import copy
import os
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from conftest import BIN, REPO, mpseal_cli
from mpseal_tools.board.catalog import PortNotFound, SeveralPorts
from mpseal_tools.cli import describe
from mpseal_tools.board.catalog import BoardFileError, find_port, get_board, load_boards

REAL_FILE = os.path.join(REPO, "boards.yaml")


def real_data():
    with open(REAL_FILE) as f:
        return yaml.safe_load(f)


def write(tmp_path, data):
    path = tmp_path / "boards.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_real_file_has_the_required_boards_with_sane_values():
    boards = load_boards(REAL_FILE)
    assert {"wemos", "nodemcu", "esp01", "esp8266-generic"} <= set(boards)
    assert boards["wemos"].flash_size == "4MB" and boards["nodemcu"].flash_size == "4MB"
    assert boards["esp01"].flash_size == "1MB"
    # 1 MB modules get MicroPython's FLASH_1M variant (no ROMFS), the rest the
    # 2 MiB variant with a ROMFS partition: their modules run from flash.
    assert boards["esp01"].firmware.file.startswith("ESP8266_GENERIC-FLASH_1M-") and not boards["esp01"].romfs
    for name in ("wemos", "nodemcu", "esp8266-generic"):
        assert boards[name].firmware.file.startswith("ESP8266_GENERIC-FLASH_2M_ROMFS-") and boards[name].romfs
    assert boards["wemos"].pin_names["D2"] == 4 == boards["wemos"].pins["dht"]
    for board in boards.values():
        assert board.chip == "esp8266"
        assert board.firmware.url == "https://micropython.org/resources/firmware/" + board.firmware.file
        assert 0 <= board.pins["led"] <= 16
        assert (0x1A86, 0x7523) in board.usb_ids  # every board family here ships with CH340 variants
        assert "udp" in board.transports


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["boards"]["wemos"].update(flash_mode="fast"), "board 'wemos', key 'flash_mode': must be one of"),
    (lambda d: d["boards"]["nodemcu"].pop("flash_baud"), "board 'nodemcu': key 'flash_baud' is missing"),
    (lambda d: d["boards"]["esp01"].update(firmware="generic"), "board 'esp01', key 'firmware': ESP8266_GENERIC-"),
    (lambda d: d["boards"]["wemos"].update(firmware="nightly"), "board 'wemos', key 'firmware': names no image"),
    (lambda d: d["boards"]["wemos"].update(usb_ids=["1a86-7523"]), "board 'wemos', key 'usb_ids': '1a86-7523'"),
    (lambda d: d["boards"]["wemos"]["pins"].update(led=17), "board 'wemos', key 'pins', key 'led': must be a GPIO"),
    (lambda d: d["boards"]["wemos"]["pins"].pop("led"), "board 'wemos', key 'pins': key 'led' is missing"),
    (lambda d: d["boards"]["wemos"].update(transports=["carrier-pigeon"]), "key 'transports': must be one of"),
    (lambda d: d["boards"]["wemos"].update(colour="blue"), "board 'wemos': unknown key 'colour'"),
    (lambda d: d["boards"]["wemos"].update(chip="esp32"), "board 'wemos', key 'chip': must be one of esp8266"),
    (lambda d: d["firmware"]["generic"].update(sha256="abc"), "firmware 'generic', key 'sha256': must be 64 hex"),
    (lambda d: d["firmware"]["generic"].update(url="http://example.com/x.bin"), "firmware 'generic', key 'url'"),
    (lambda d: d.pop("boards"), "top level: key 'boards' is missing"),
])
def test_broken_files_name_the_board_and_key(tmp_path, mutate, expected):
    data = copy.deepcopy(real_data())
    mutate(data)
    with pytest.raises(BoardFileError) as info:
        load_boards(write(tmp_path, data))
    assert expected in str(info.value)
    assert str(tmp_path / "boards.yaml") in str(info.value)


def test_a_pinned_sha256_is_accepted_and_normalised(tmp_path):
    data = real_data()
    data["firmware"][data["boards"]["wemos"]["firmware"]]["sha256"] = "AB" * 32
    board = load_boards(write(tmp_path, data))["wemos"]
    assert board.firmware.pinned and board.firmware.sha256 == "ab" * 32


def test_invalid_yaml_and_missing_file_are_user_errors(tmp_path):
    bad = tmp_path / "boards.yaml"
    bad.write_text("boards: [unclosed\n")
    with pytest.raises(BoardFileError, match="not valid YAML"):
        load_boards(str(bad))
    with pytest.raises(BoardFileError, match="not found"):
        load_boards(str(tmp_path / "absent.yaml"))


def test_cli_reports_a_broken_board_file_without_a_traceback(tmp_path):
    data = real_data()
    data["boards"]["wemos"]["flash_baud"] = 12345
    path = write(tmp_path, data)
    result = subprocess_env_cli(path, "flash", "--board", "wemos", "--dry-run")
    assert result.returncode == 1
    assert b"mpseal: " in result.stderr and b"board 'wemos', key 'flash_baud'" in result.stderr
    assert b"Traceback" not in result.stderr


def subprocess_env_cli(boards_file, *args):
    env = dict(os.environ, MPSEAL_BOARDS_FILE=boards_file)
    return subprocess.run([os.path.join(BIN, "mpseal")] + list(args), capture_output=True, env=env, timeout=60)


def port(device, vid=None, pid=None, description="n/a"):
    return SimpleNamespace(device=device, vid=vid, pid=pid, description=description)


def test_find_port_picks_the_one_matching_bridge():
    wemos = get_board("wemos", REAL_FILE)
    ports = [port("/dev/ttyS0"), port("/dev/ttyUSB0", 0x1A86, 0x7523, "USB Serial"), port("/dev/ttyACM0", 0x2E8A, 0x0005)]
    assert find_port(wemos, ports) == "/dev/ttyUSB0"


def test_find_port_explains_none_and_several():
    wemos = get_board("wemos", REAL_FILE)
    with pytest.raises(PortNotFound) as none:
        find_port(wemos, [port("/dev/ttyS0")])
    assert "no serial port looks like the wemos board" in str(none.value)
    assert "1a86:7523" in str(none.value) and "/dev/ttyS0" in str(none.value)
    assert "--port" in describe(none.value)  # the CLI layer says what to do
    two = [port("/dev/ttyUSB0", 0x1A86, 0x7523, "CH340"), port("/dev/ttyUSB1", 0x1A86, 0x7523, "CH340")]
    with pytest.raises(SeveralPorts) as several:
        find_port(wemos, two)
    assert "several serial ports" in str(several.value)
    assert "/dev/ttyUSB0" in str(several.value) and "/dev/ttyUSB1" in str(several.value)
    assert "--port" in describe(several.value)


def test_find_port_without_a_board_accepts_any_known_bridge():
    assert find_port(None, [port("/dev/ttyUSB3", 0x0403, 0x6001)]) == "/dev/ttyUSB3"


def test_unknown_board_lists_the_choices():
    result = mpseal_cli("flash", "--board", "d1-maxi", "--dry-run")
    assert result.returncode == 1
    assert b"unknown board 'd1-maxi': choose one of esp01, esp8266-generic, nodemcu, wemos" in result.stderr


def test_romfs_needs_an_image_with_a_romfs_partition(tmp_path):
    data = yaml.safe_load(open(REAL_FILE))
    data["boards"]["esp01"]["romfs"] = True
    path = tmp_path / "boards.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BoardFileError, match=r"board 'esp01', key 'romfs': .*FLASH_1M.* has no ROMFS partition"):
        load_boards(str(path))


def test_pin_names_must_be_gpio_numbers(tmp_path):
    data = yaml.safe_load(open(REAL_FILE))
    data["boards"]["wemos"]["pin_names"] = {"D2": 40}
    path = tmp_path / "boards.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BoardFileError, match=r"board 'wemos', key 'pin_names', 'D2': must be a GPIO number 0..16"):
        load_boards(str(path))
