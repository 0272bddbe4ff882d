"""boards.yaml: load, validate, and find the serial port a board is on.

    from mpseal_tools.board.catalog import load_boards, get_board, find_port
    board = get_board("wemos")          # Board, or UnknownBoard naming the choices
    port = find_port(board)             # "/dev/ttyUSB0", or PortNotFound / SeveralPorts

Every error names the file, the board and the key, so a typo in boards.yaml
is fixed in one look. See docs/boards.md for the format.
"""
import os
import re
from dataclasses import dataclass, field

import yaml

from mpseal_host.errors import MpsealError

from mpseal_tools.paths import BOARDS_FILE as DEFAULT_BOARDS_FILE
BOARDS_FILE_ENV = "MPSEAL_BOARDS_FILE"  # lets a user keep a private board list

UNPINNED = "UNPINNED"  # the marker for a sha256 nobody has verified yet
CHIPS = ("esp8266",)
FLASH_MODES = ("keep", "qio", "qout", "dio", "dout")
FLASH_FREQS = ("keep", "80m", "40m", "26m", "20m")
FLASH_SIZES = {"512KB": 512 * 1024, "1MB": 1 << 20, "2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20}
BAUD_RATES = (9600, 57600, 74880, 115200, 230400, 460800, 921600, 1500000)
TRANSPORTS = ("udp", "http", "sms", "lora")
MAX_GPIO = 16  # the ESP8266 has GPIO0..GPIO16
# The standard MicroPython image needs 2 MiB; its variants say their size in the name.
IMAGE_MIN_FLASH = (("FLASH_512K", FLASH_SIZES["512KB"]), ("FLASH_1M", FLASH_SIZES["1MB"]))
STANDARD_IMAGE_MIN_FLASH = FLASH_SIZES["2MB"]
BOARD_KEYS = ("description", "chip", "flash_size", "flash_mode", "flash_freq", "flash_baud", "repl_baud",
              "firmware", "usb_ids", "pins", "transports")
# Optional board keys: romfs (bool, default false): the board's image has a
# ROMFS partition (MicroPython >= 1.25 FLASH_2M_ROMFS), so `mpseal build`
# makes build/<board>/romfs.img and deploy writes it there (romfs.py).
# pin_names: the names printed on the board ("D2") -> GPIO numbers, for
# `mpseal provision --sensor dht22:D2`.
OPTIONAL_BOARD_KEYS = ("romfs", "pin_names")
ROMFS_IMAGE_MARKER = "ROMFS"  # micropython.org names its ROMFS variants so: ESP8266_GENERIC-FLASH_2M_ROMFS-...
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
USB_ID_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")


@dataclass(frozen=True)
class FirmwareImage:
    name: str
    file: str
    url: str
    sha256: str  # 64 lower-case hex digits, or UNPINNED

    @property
    def pinned(self):
        return self.sha256 != UNPINNED

    @property
    def min_flash_bytes(self):
        for marker, size in IMAGE_MIN_FLASH:
            if marker in self.file:
                return size
        return STANDARD_IMAGE_MIN_FLASH


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    chip: str
    flash_size: str
    flash_mode: str
    flash_freq: str
    flash_baud: int
    repl_baud: int
    firmware: FirmwareImage
    usb_ids: tuple  # ((vid, pid), ...) as ints
    pins: dict = field(hash=False)
    transports: tuple
    romfs: bool = False
    pin_names: dict = field(default_factory=dict, hash=False)

    @property
    def flash_size_bytes(self):
        return FLASH_SIZES[self.flash_size]


class BoardFileError(MpsealError):
    """boards.yaml (or the file named by MPSEAL_BOARDS_FILE) is wrong; the message names file, board and key."""


class UnknownBoard(BoardFileError):
    pass


class PortNotFound(MpsealError):
    """No serial port looks like the board."""


class SeveralPorts(MpsealError):
    """More than one serial port could be the board."""


class _Checker:
    """Builds error messages that say where in the file the problem is."""

    def __init__(self, path):
        self.path = path

    def fail(self, where, problem):
        raise BoardFileError("%s: %s: %s" % (self.path, where, problem))

    def choice(self, where, value, choices):
        if value not in choices:
            self.fail(where, "must be one of %s (got %r)" % (", ".join(map(str, choices)), value))
        return value

    def mapping(self, where, value):
        if not isinstance(value, dict):
            self.fail(where, "must be a mapping of keys to values (got %s)" % type(value).__name__)
        return value

    def text(self, where, value):
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "must be a non-empty string (got %r)" % (value,))
        return value


def _load_image(check, name, raw):
    where = "firmware %r" % name
    check.mapping(where, raw)
    for key in ("file", "url", "sha256"):
        if key not in raw:
            check.fail(where, "key %r is missing" % key)
    file = check.text(where + ", key 'file'", raw["file"])
    if not file.endswith(".bin") or "/" in file:
        check.fail(where + ", key 'file'", "must be a plain .bin file name (got %r)" % file)
    url = check.text(where + ", key 'url'", raw["url"])
    if not url.startswith("https://") or not url.endswith("/" + file):
        check.fail(where + ", key 'url'", "must be an https:// URL ending in /%s (got %r)" % (file, url))
    sha256 = str(raw["sha256"]).strip()
    if sha256 != UNPINNED:
        sha256 = sha256.lower()
        if not SHA256_RE.match(sha256):
            check.fail(where + ", key 'sha256'", "must be 64 hex digits or %s (got %r)" % (UNPINNED, raw["sha256"]))
    return FirmwareImage(name=name, file=file, url=url, sha256=sha256)


def _load_pins(check, where, raw):
    check.mapping(where, raw)
    if "led" not in raw:
        check.fail(where, "key 'led' is missing (the GPIO of the status LED)")
    pins = {}
    for key, value in raw.items():
        if key == "led_active_low":
            if not isinstance(value, bool):
                check.fail(where + ", key 'led_active_low'", "must be true or false (got %r)" % (value,))
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GPIO:
            check.fail(where + ", key %r" % key, "must be a GPIO number 0..%d (got %r)" % (MAX_GPIO, value))
        pins[key] = value
    pins.setdefault("led_active_low", False)
    return pins


def _load_board(check, name, raw, images):
    where = "board %r" % name
    check.mapping(where, raw)
    for key in BOARD_KEYS:
        if key not in raw:
            check.fail(where, "key %r is missing" % key)
    for key in raw:
        if key not in BOARD_KEYS + OPTIONAL_BOARD_KEYS:
            check.fail(where, "unknown key %r (known: %s)" % (key, ", ".join(BOARD_KEYS + OPTIONAL_BOARD_KEYS)))

    def at(key):
        return "%s, key %r" % (where, key)

    flash_size = check.choice(at("flash_size"), raw["flash_size"], tuple(FLASH_SIZES))
    image = images.get(raw["firmware"])
    if image is None:
        check.fail(at("firmware"), "names no image under 'firmware:' (known: %s)" % ", ".join(sorted(images)))
    if FLASH_SIZES[flash_size] < image.min_flash_bytes:
        check.fail(at("firmware"), "%s needs at least %d KiB of flash but the board has %s; 1 MB boards need the "
                   "FLASH_1M image" % (image.file, image.min_flash_bytes // 1024, flash_size))
    usb_ids = raw["usb_ids"]
    if not isinstance(usb_ids, list) or not usb_ids:
        check.fail(at("usb_ids"), "must be a non-empty list of \"vid:pid\" strings like \"1a86:7523\"")
    parsed_ids = []
    for usb_id in usb_ids:
        match = USB_ID_RE.match(str(usb_id).lower())
        if not match:
            check.fail(at("usb_ids"), "%r is not a \"vid:pid\" pair of 4 hex digits each" % (usb_id,))
        parsed_ids.append((int(match.group(1), 16), int(match.group(2), 16)))
    transports = raw["transports"]
    if not isinstance(transports, list) or not transports:
        check.fail(at("transports"), "must be a non-empty list (choices: %s)" % ", ".join(TRANSPORTS))
    for transport in transports:
        check.choice(at("transports"), transport, TRANSPORTS)
    romfs = raw.get("romfs", False)
    if not isinstance(romfs, bool):
        check.fail(at("romfs"), "must be true or false (got %r)" % (romfs,))
    if romfs and ROMFS_IMAGE_MARKER not in image.file:
        check.fail(at("romfs"), "%s has no ROMFS partition: use a %s image (MicroPython >= 1.25) or romfs: false"
                   % (image.file, ROMFS_IMAGE_MARKER))
    pin_names = check.mapping(at("pin_names"), raw.get("pin_names", {}))
    for pin_name, gpio in pin_names.items():
        if isinstance(gpio, bool) or not isinstance(gpio, int) or not 0 <= gpio <= MAX_GPIO:
            check.fail(at("pin_names") + ", %r" % pin_name, "must be a GPIO number 0..%d (got %r)" % (MAX_GPIO, gpio))
    return Board(
        romfs=romfs,
        pin_names={str(k): v for k, v in pin_names.items()},
        name=name,
        description=check.text(at("description"), raw["description"]),
        chip=check.choice(at("chip"), raw["chip"], CHIPS),
        flash_size=flash_size,
        flash_mode=check.choice(at("flash_mode"), raw["flash_mode"], FLASH_MODES),
        flash_freq=check.choice(at("flash_freq"), raw["flash_freq"], FLASH_FREQS),
        flash_baud=check.choice(at("flash_baud"), raw["flash_baud"], BAUD_RATES),
        repl_baud=check.choice(at("repl_baud"), raw["repl_baud"], BAUD_RATES),
        firmware=image,
        usb_ids=tuple(parsed_ids),
        pins=_load_pins(check, at("pins"), raw["pins"]),
        transports=tuple(transports),
    )


def boards_file_path(path=None):
    return path or os.environ.get(BOARDS_FILE_ENV) or DEFAULT_BOARDS_FILE


def load_boards(path=None):
    """Returns {name: Board}, or raises BoardFileError naming file, board and key."""
    path = boards_file_path(path)
    check = _Checker(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise BoardFileError("%s: not found (set %s or run from the repository)" % (path, BOARDS_FILE_ENV))
    except yaml.YAMLError as exc:
        raise BoardFileError("%s: not valid YAML: %s" % (path, exc))
    check.mapping("top level", data)
    for key in ("firmware", "boards"):
        if key not in data:
            check.fail("top level", "key %r is missing" % key)
    images = {name: _load_image(check, name, raw) for name, raw in check.mapping("firmware", data["firmware"]).items()}
    boards = check.mapping("boards", data["boards"])
    if not boards:
        check.fail("boards", "no boards defined")
    return {str(name): _load_board(check, str(name), raw, images) for name, raw in boards.items()}


def get_board(name, path=None):
    boards = load_boards(path)
    if name not in boards:
        raise UnknownBoard("unknown board %r: choose one of %s (defined in %s)"
                        % (name, ", ".join(sorted(boards)), boards_file_path(path)))
    return boards[name]


def format_usb_id(usb_id):
    return "%04x:%04x" % usb_id


def find_port(board=None, ports=None):
    """The one serial port whose USB VID:PID matches `board` (any board's when
    None). `ports` defaults to pyserial's list_ports.comports()."""
    if ports is None:
        from serial.tools import list_ports  # pyserial; imported late so loading boards needs no serial stack

        ports = list_ports.comports()
    if board is None:
        wanted = {usb_id for b in load_boards().values() for usb_id in b.usb_ids}
        what = "an ESP8266 board"
    else:
        wanted = set(board.usb_ids)
        what = "the %s board" % board.name
    matches = [p for p in ports if p.vid is not None and (p.vid, p.pid) in wanted]
    if len(matches) == 1:
        return matches[0].device
    if not matches:
        seen = ", ".join(p.device for p in ports) or "none"
        raise PortNotFound("no serial port looks like %s (USB IDs %s; ports seen: %s)"
                           % (what, ", ".join(sorted(format_usb_id(i) for i in wanted)), seen))
    listed = ", ".join("%s (%s)" % (p.device, p.description or format_usb_id((p.vid, p.pid))) for p in matches)
    raise SeveralPorts("several serial ports could be %s: %s" % (what, listed))
