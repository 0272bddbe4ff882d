"""`mpseal flash`: put MicroPython on a board the way micropython.org documents
it for the ESP8266 (erase, then write the image at 0x0 with
--flash-size=detect and the board's flash mode), then wait for the prompt.

Steps: 1 check the chip and its flash size (esptool flash-id), 2 erase-flash,
3 write-flash, 4 wait for ">>> " on the serial port. esptool runs as a child
process (`python -m esptool`): its progress output passes straight through and
its exit code plus last words decide which of our errors the user sees.
"""
import hashlib
import json
import os
import re
import select
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from mpseal_host.errors import MpsealError
from mpseal_tools.board.catalog import FLASH_SIZES, find_port
from mpseal_tools.board.monitor import wait_for_repl

CACHE_ENV = "MPSEAL_CACHE_DIR"
ESP_IMAGE_MAGIC = 0xE9  # first byte of every ESP8266 boot image
DOWNLOAD_CHUNK = 64 * 1024
DOWNLOAD_TIMEOUT_S = 60
PINS_FILE = "pins.json"  # beside the cached images
# esptool prints progress at least every few seconds; erasing a 4 MB chip is its longest quiet step (~40 s).
ESPTOOL_SILENCE_S = 180
FLASH_ADDRESS = "0x0"

# esptool's last words -> what we tell the user. First match wins.
ESPTOOL_ERRORS = (
    (re.compile(r"This chip is (\S+), not (\S+)\."),
     lambda m, port: "the chip on %s is an %s, not an %s: this board type cannot run this image; check --board "
                     "and --port" % (port, m.group(1), m.group(2))),
    (re.compile(r"[Pp]ermission denied"),
     lambda m, port: "no permission to open %s: add yourself to the 'dialout' group and log in again" % port),
    (re.compile(r"[Cc]ould not open port|No such file or directory|could not open"),
     lambda m, port: "cannot open serial port %s: is the board plugged in and the name right?" % port),
    (re.compile(r"Failed to connect to (\S+?):? (.*)"),
     lambda m, port: "no %s bootloader answered on %s (%s): hold the FLASH/BOOT button (GPIO0 low) while "
                     "pressing reset, check the USB cable carries data, or try another port"
                     % (m.group(1), port, m.group(2).strip().rstrip("."))),
)


class FlashError(MpsealError):
    """Flashing MicroPython onto a board failed; the message says why."""


class FirmwareNotFound(FlashError):
    pass


class ChecksumMismatch(FlashError):
    """A downloaded image differs from its pinned sha256."""


class DownloadFailed(FlashError):
    pass


class ToolMissing(FlashError):
    """A program the step needs (esptool) cannot be started."""


def cache_dir():
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mpseal", "firmware")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_image_file(path):
    """A file the user handed us: it must exist and look like an ESP8266 image."""
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except FileNotFoundError:
        raise FirmwareNotFound("firmware image %s does not exist" % path)
    except IsADirectoryError:
        raise FlashError("firmware image %s is a folder, not a .bin file" % path)
    if not first or first[0] != ESP_IMAGE_MAGIC:
        raise FlashError("%s is not an ESP8266 firmware image (it does not start with byte 0x%02X): download the .bin "
                        "from micropython.org/download/ESP8266_GENERIC" % (path, ESP_IMAGE_MAGIC))
    return path


def download(url, dest, progress=None):
    """Fetches url into dest (a temporary name); reports bytes as it goes."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK), b""):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress("downloading %s: %d KiB%s" % (os.path.basename(dest), done // 1024,
                                                           " of %d KiB" % (total // 1024) if total else ""))
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadFailed("cannot download %s (%s)" % (url, getattr(exc, "reason", exc)))


def cached_image_path(board, cache=None):
    return os.path.join(cache or cache_dir(), board.firmware.file)


def pins_path(cache=None):
    """The local pin file: image file name -> sha256 recorded on first download."""
    return os.path.join(cache or cache_dir(), PINS_FILE)


def load_pins(cache=None):
    try:
        with open(pins_path(cache)) as f:
            pins = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise FlashError("the pin file %s is unreadable (%s): fix or delete it (every image is then trusted "
                         "again on its next download)" % (pins_path(cache), exc))
    return pins if isinstance(pins, dict) else {}


def record_pin(name, sha256, cache=None):
    pins = load_pins(cache)
    pins[name] = sha256
    path = pins_path(cache)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".part"
    with open(partial, "w") as f:
        json.dump(pins, f, indent=1, sort_keys=True)
    os.replace(partial, path)


def expected_sha256(image, cache=None):
    """(sha256, where it is pinned) or (None, None): boards.yaml first, then
    what this machine recorded when it first downloaded the image."""
    if image.pinned:
        return image.sha256, "boards.yaml"
    recorded = load_pins(cache).get(image.file)
    return (recorded, pins_path(cache)) if recorded else (None, None)


def resolve_image(board, firmware=None, cache=None, progress=None):
    """The image to flash: the user's file, or the board's image from the
    cache, downloaded once. Its sha256 is checked against boards.yaml's pin,
    or against the one this machine recorded at its first download (trust on
    first use, like ssh host keys: the first download is trusted and said
    so; any later different bytes are refused)."""
    if firmware:
        return check_image_file(firmware)
    image = board.firmware
    path = cached_image_path(board, cache)
    wanted, pinned_in = expected_sha256(image, cache)
    if os.path.exists(path):
        if wanted and sha256_of(path) == wanted:
            return path
        os.unlink(path)  # a damaged or unpinned cache entry: fetch a fresh copy rather than flash it
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=image.file + ".", suffix=".part", dir=os.path.dirname(path))
    os.close(fd)
    try:
        download(image.url, partial, progress)
        actual = sha256_of(partial)
        if wanted and actual != wanted:
            raise ChecksumMismatch("checksum mismatch for %s: %s pins sha256 %s but the download has %s; nothing "
                                   "was flashed (the download is damaged, or the image changed on the server)"
                                   % (image.url, pinned_in, wanted, actual))
        check_image_file(partial)
        if not wanted:
            record_pin(image.file, actual, cache)
            if progress:
                progress("trusting %s on first use: sha256 %s, recorded in %s (compare it with the one "
                         "micropython.org publishes; later downloads must match it)"
                         % (image.file, actual, pins_path(cache)))
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def esptool_commands(board, port, image, connect_attempts=None):
    """[(step, argv)] for checking, erasing and writing, in order."""
    base = [sys.executable, "-m", "esptool", "--chip", board.chip, "--port", port, "--baud", str(board.flash_baud)]
    if connect_attempts is not None:
        base += ["--connect-attempts", str(connect_attempts)]
    write = base + ["write-flash", "--flash-size=detect"]
    if board.flash_mode != "keep":
        write += ["--flash-mode", board.flash_mode]
    if board.flash_freq != "keep":
        write += ["--flash-freq", board.flash_freq]
    write += [FLASH_ADDRESS, image]
    return [("check the chip", base + ["flash-id"]), ("erase the flash", base + ["erase-flash"]),
            ("write MicroPython", write)]


def explain_esptool_failure(output, port, step, returncode):
    for pattern, message in ESPTOOL_ERRORS:
        match = pattern.search(output)
        if match:
            return message(match, port)
    errors = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    return "esptool could not %s on %s (exit %d): %s" % (step, port, returncode, last)


def run_esptool(step, argv, port, out):
    """Runs one esptool command, passing its progress through to `out`."""
    try:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise ToolMissing("cannot start esptool (%s)" % exc)
    captured = bytearray()
    silent = False
    try:
        while True:
            # esptool has its own serial timeouts; this deadline catches an esptool that hangs anyway.
            ready, _, _ = select.select([child.stdout], [], [], ESPTOOL_SILENCE_S)
            if not ready:
                silent = True
                child.kill()
                break
            chunk = os.read(child.stdout.fileno(), 4096)
            if not chunk:
                break
            captured += chunk
            out.write(chunk.decode("utf-8", "replace"))
            out.flush()
    finally:
        returncode = child.wait()
        child.stdout.close()
    if silent:
        raise FlashError("esptool printed nothing for %d s while trying to %s on %s and was stopped: unplug and "
                        "replug the board, then flash again" % (ESPTOOL_SILENCE_S, step, port))
    text = captured.decode("utf-8", "replace")
    if returncode != 0:
        raise FlashError(explain_esptool_failure(text, port, step, returncode))
    return text


def check_flash_size(board, port, flash_id_output):
    """Refuses before erasing when the chip's flash is too small for the image."""
    match = re.search(r"Detected flash size: (\S+)", flash_id_output)
    if not match or match.group(1) not in FLASH_SIZES:
        return  # unknown chip id: esptool itself will warn; the write still uses --flash-size=detect
    detected = FLASH_SIZES[match.group(1)]
    if detected < board.firmware.min_flash_bytes:
        raise FlashError("the board on %s has %s of flash, too little for %s (board %s expects %s): pick the board "
                        "type that matches, e.g. --board esp01 for 1 MB modules; nothing was erased"
                        % (port, match.group(1), board.firmware.file, board.name, board.flash_size))


def describe(board, port, image):
    return ["# board %s: %s; flash %s, mode %s, freq %s, %d baud" % (
        board.name, board.description, board.flash_size, board.flash_mode, board.flash_freq, board.flash_baud),
        "# image: %s" % image]


def dry_run(board, port=None, firmware=None, cache=None, connect_attempts=None, out=None):
    """Prints the exact esptool commands (stdout) and notes (as # comments); does nothing."""
    out = out or sys.stdout
    notes = []
    if not port:
        try:
            port = find_port(board)
        except MpsealError as exc:
            notes.append("# port: %s" % exc)
            port = "PORT"
    if firmware:
        image = check_image_file(firmware)
    else:
        image = cached_image_path(board, cache)
        wanted, pinned_in = expected_sha256(board.firmware, cache)
        if not os.path.exists(image):
            if wanted:
                notes.append("# would download %s into %s and check sha256 %s (pinned in %s)"
                             % (board.firmware.url, image, wanted, pinned_in))
            else:
                notes.append("# would download %s into %s and record its sha256 in %s (trust on first use: "
                             "boards.yaml pins none)" % (board.firmware.url, image, pins_path(cache)))
    for line in describe(board, port, image) + notes:
        print(line, file=out)
    for _, argv in esptool_commands(board, port, image, connect_attempts):
        print(shlex.join(argv), file=out)
    print("# then wait for the MicroPython prompt on %s at %d baud" % (port, board.repl_baud), file=out)
    return 0


def flash(board, port=None, firmware=None, cache=None, connect_attempts=None, out=None, repl_timeout=None):
    out = out or sys.stdout
    port = port or find_port(board)

    def say(message):
        print("mpseal: " + message, file=out, flush=True)

    image = resolve_image(board, firmware, cache, progress=say)
    say("flashing %s onto the %s board on %s" % (os.path.basename(image), board.name, port))
    commands = esptool_commands(board, port, image, connect_attempts)
    total = len(commands) + 1
    for number, (step, argv) in enumerate(commands, 1):
        say("[%d/%d] %s: %s" % (number, total, step, shlex.join(argv[1:])))
        output = run_esptool(step, argv, port, out)
        if number == 1:
            check_flash_size(board, port, output)
    say("[%d/%d] waiting for the MicroPython prompt on %s" % (total, total, port))
    kwargs = {} if repl_timeout is None else {"timeout": repl_timeout}
    wait_for_repl(port, board.repl_baud, progress=say, **kwargs)
    say("done: MicroPython answers on %s; next: mpseal deploy --board %s --port %s" % (port, board.name, port))
    return 0
