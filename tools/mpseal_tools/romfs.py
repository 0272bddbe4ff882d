"""ROMFS: the board's compiled modules in one read-only, memory-mapped image.

MicroPython >= 1.25 (`vfs.VfsRom`; on the ESP8266 the `FLASH_2M_ROMFS`
images) mounts a ROMFS partition at /rom and puts /rom on sys.path. A .mpy
imported from there is run in place: its bytecode and constant data stay in
flash instead of being copied into the heap, so only the module's objects
(globals dict, function objects, interned names) take heap. Measured on the
unix port (`make bench`): the modules of a UDP board retain ~15 KB less.

Image layout: the files of /lib, at the image's root (so /lib/app.mpy is
/rom/app.mpy, /lib/mpseal/packet.mpy is /rom/mpseal/packet.mpy): /rom is on
sys.path since 1.25, /rom/lib only since later versions. boot.py and main.py
stay on the board's own filesystem (MicroPython runs them by file name).

The image is written with mpremote's own writer (mpremote.romfs) and put on a
board with mpremote's `romfs deploy` steps, so it is byte for byte what
`mpremote romfs build` / `deploy` would do.

The unix port has `vfs.VfsRom` but no memory-mapped flash: the simulated
board (sim/unix_board.py) reads the image into ONE bytearray allocated first, at the
front of the heap, and enlarges the heap by exactly what that block takes
(`firmware_heap`), so the firmware has the same heap as without ROMFS, and
its STATS heap figures are reported without the image (`Board.heap_offset`).
"""
import functools
import os
import subprocess

from mpseal_host.errors import MpsealError

MOUNT = "/rom"
IMAGE = "romfs.img"  # in build/<board>/, next to manifest.json
HEADER = b"\xd2\xcd\x31"  # a ROMFS image starts with these bytes (mpremote.romfs.VfsRomWriter.ROMFS_HEADER)


class RomfsError(MpsealError):
    pass


def image_path(board_path):
    """Where a /lib module goes in the image: "/lib/mpseal/packet.mpy" ->
    "mpseal/packet.mpy" (mounted: /rom/mpseal/packet.mpy). Files at the
    root ("/app.mpy", the simulated board's layout) keep their name."""
    path = board_path.lstrip("/")
    return path[4:] if path.startswith("lib/") else path


def source_name(board_path):
    """The module's __file__ once imported from the image: mpy-cross -s gets
    the same string, so the name is interned once (docs/firmware.md)."""
    return MOUNT + "/" + image_path(board_path)


def make_image(files):
    """The image (bytes) for files {path in the image: bytes}, directories
    nested as the paths say."""
    from mpremote.romfs import VfsRomWriter  # mpremote is a dependency of the tools

    tree = {}
    for path, data in files.items():
        node = tree
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = data
    writer = VfsRomWriter()

    def add(node):
        for name in sorted(node):
            if isinstance(node[name], dict):
                writer.opendir(name)
                add(node[name])
                writer.closedir()
            else:
                writer.mkfile(name, bytes(node[name]))

    add(tree)
    return writer.finalise()


def image_from_folder(folder, skip=()):
    """The image of every .mpy under `folder` (a build or flash folder),
    placed by image_path(); `skip`: file names that stay out."""
    files = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if name.endswith(".mpy") and name not in skip:
                local = os.path.join(root, name)
                rel = "/" + os.path.relpath(local, folder).replace(os.sep, "/")
                with open(local, "rb") as f:
                    files[image_path(rel)] = f.read()
    return make_image(files)


# --- the simulated board (unix port) ---------------------------------------

# Launcher lines that come before the flash is mounted: the image goes into
# one block at the front of the heap (allocated at its final size: f.read()
# would grow a buffer and leave holes), then is mounted at /rom.
LAUNCHER_READ = (
    "import vfs\n"
    "_f = open(%r, 'rb')\n"
    "_rom = bytearray(%d)\n"
    "_f.readinto(_rom)\n"
    "_f.close()\n"
    "del _f\n"
)
LAUNCHER_MOUNT = "vfs.mount(vfs.VfsRom(_rom), '/rom')\n"
# Where MicroPython's _boot.py puts /rom: first.
SYS_PATH = "['/rom', '', '.frozen', '/lib']"

_PROBE = "import gc\n%sgc.collect()\nprint(gc.mem_free(), gc.mem_alloc())\n"


def _heap_bytes(heapsize):
    text = str(heapsize).lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    return int(text.rstrip("km")) * scale


def _probe(micropython, heap, prelude):
    out = subprocess.run([micropython, "-X", "heapsize=%d" % heap, "-c", _PROBE % prelude],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RomfsError("micropython heap probe failed: %s" % (out.stderr.strip() or out.stdout.strip()))
    free, alloc = out.stdout.split()
    return int(free), int(alloc)


def usable_heap(micropython, heapsize):
    """Bytes gc.mem_free() + gc.mem_alloc() add up to at `-X heapsize=`
    (less than heapsize: the GC's own tables come out of it)."""
    return sum(_probe(micropython, _heap_bytes(heapsize), ""))


@functools.lru_cache(maxsize=None)
def firmware_heap(micropython, heapsize, image_size):
    """(heap in bytes for `micropython -X heapsize=`, bytes the image takes):
    the smallest heap whose free memory, once the image's bytearray is
    allocated, is at least what `heapsize` alone has free. Found by asking
    the interpreter (the GC's tables grow with the heap), in a few ms."""
    want, base_alloc = _probe(micropython, _heap_bytes(heapsize), "")
    prelude = "_rom = bytearray(%d)\n" % image_size
    low, high = _heap_bytes(heapsize) + image_size, _heap_bytes(heapsize) + 2 * image_size + 4096
    while high - low > 16:
        mid = (low + high) // 2
        if _probe(micropython, mid, prelude)[0] >= want:
            high = mid
        else:
            low = mid
    free, alloc = _probe(micropython, high, prelude)
    return high, alloc - base_alloc


_IMAGE_FILES = (
    "import vfs, os, hashlib, binascii\n"
    "f = open(%r, 'rb'); b = f.read(); f.close()\n"
    "vfs.mount(vfs.VfsRom(b), '/rom')\n"
    "def walk(d):\n"
    " for e in os.ilistdir(d):\n"
    "  p = d + '/' + e[0]\n"
    "  if e[1] & 0x4000: walk(p)\n"
    "  else:\n"
    "   with open(p, 'rb') as g: print(p, binascii.hexlify(hashlib.sha256(g.read()).digest()).decode())\n"
    "walk('/rom')\n"
)


def image_files(micropython, image):
    """{/rom path: sha256 hex} of a ROMFS image file, as the unix port's
    VfsRom mounts it (the board's own reader, not a second parser)."""
    out = subprocess.run([micropython, "-c", _IMAGE_FILES % str(image)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return dict(line.split() for line in out.splitlines())


# --- a real board (mpremote over serial) ------------------------------------

class _MpremoteState:
    """The two things mpremote's `romfs deploy` asks of its state."""

    def __init__(self, transport):
        self.transport = transport

    def ensure_raw_repl(self):
        if not self.transport.in_raw_repl:
            self.transport.enter_raw_repl(soft_reset=False)

    def did_action(self):
        pass


class _DeployArgs:
    partition = 0
    mpy = False

    def __init__(self, path):
        self.path = path


def deploy(transport, path):
    """Writes the image file `path` into the board's ROMFS partition 0, the
    steps of `mpremote romfs deploy` (mpremote.commands), over an open
    mpremote transport. RomfsError when the board has no ROMFS (a standard
    image: flash the board's FLASH_2M_ROMFS image) or the image does not fit."""
    from mpremote.commands import CommandError, _do_romfs_deploy

    try:
        _do_romfs_deploy(_MpremoteState(transport), _DeployArgs(path))
    except CommandError as exc:
        raise RomfsError("%s: flash the board's ROMFS image (boards.yaml 'romfs: true' boards, make flash) "
                         "or deploy without ROMFS" % exc)
    except SystemExit:  # mpremote exits on a bad or too big image
        raise RomfsError("the ROMFS image %s does not fit the board's ROMFS partition" % path)


# --- mpseal build / deploy ----------------------------------------------------

def build_image(items, out_dir, compile_one):
    """Writes <out_dir>/romfs.img holding the /lib modules of `items`
    ([(source, board path)], the build plan), each compiled again by
    compile_one(source, target file, name in tracebacks) with its /rom name,
    and returns the manifest entry: {"path", "size", "sha256", "covers": the
    /lib paths the image replaces, "files": {/lib path: {"size", "sha256"} of
    its /rom compile}}. The /rom compile differs from the /lib one only in the
    source name (its __file__); `mpseal release` signs both hashes, so an OTA
    update can run a module unchanged from the image (docs/ota.md "ROMFS boards")."""
    import hashlib
    import tempfile

    covers, files, hashes = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (source, target) in enumerate(items):
            if target.startswith("/lib/") and target.endswith(".mpy"):
                local = os.path.join(tmp, "%d.mpy" % index)
                compile_one(source, local, source_name(target))
                with open(local, "rb") as f:
                    data = f.read()
                files[image_path(target)] = data
                hashes[target] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                covers.append(target)
    image = make_image(files)
    with open(os.path.join(out_dir, IMAGE), "wb") as f:
        f.write(image)
    return {"path": IMAGE, "size": len(image), "sha256": hashlib.sha256(image).hexdigest(), "covers": covers,
            "files": hashes}


# MicroPython before 1.23 has no vfs module, before 1.25 no rom_ioctl.
ROMFS_PROBE = ("try:\n import vfs\n print(hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0)\n"
               "except ImportError:\n print(False)")


def board_has_romfs(board):
    """True when the board's MicroPython has a ROMFS partition (a
    FLASH_2M_ROMFS image): a board without one gets the /lib files."""
    return bool(board.eval_repr(ROMFS_PROBE))
