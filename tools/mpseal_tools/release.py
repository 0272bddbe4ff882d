"""`mpseal release-key new|show`, `mpseal release`: signed, versioned app
releases for over-the-air updates (docs/ota.md).

A release is a folder <releases>/<board>/<version>/:
    release.txt     the signed manifest (format below), exactly these bytes signed
    release.sig     "<key id> <signature>\\n": ECDSA P-256 / SHA-256 over
                    release.txt, r | s as 128 hex digits (IEEE P1363)
    files/<path>    each file of the build, by its path on the board

release.txt is line-oriented so the board can hash it while it downloads and
read it a line at a time later (firmware/ota_manifest.py):
    mpseal-release 1
    board <board name>
    version <integer, 1..2**31-1: the anti-rollback counter compares these>
    name <human version string>
    file <sha256 hex> <size> <path on the board>      (one line per file)
    rom <sha256 hex> <size>     (ROMFS builds, right after a /lib file's line:
                                the same module compiled with its /rom name, as
                                the board's ROMFS image holds it; a board whose
                                /rom file has exactly these bytes runs it from
                                there instead of fetching it: docs/ota.md
                                "ROMFS boards". Older agents skip the line.)

The release key is made once and kept offline (a file, mode 0600, never in
the receiver's database, never on a command line). Boards list the public
keys they accept in config.json ("ota": {"keys": [...]}), so a new key can be
rolled out (listed next to the old one) before releases switch to it.
"""
import hashlib
import os
import re
import shutil
import stat
import tempfile

from mpseal_host.errors import MpsealError

FORMAT = "mpseal-release 1"
MANIFEST = "release.txt"
SIGNATURE = "release.sig"
FILES = "files"
MAX_VERSION = 2**31 - 1
DEFAULT_KEY_FILE = os.path.join(os.path.expanduser("~"), ".config", "mpseal", "release-key.pem")
KEY_FILE_ENV = "MPSEAL_RELEASE_KEY"  # path of the key file (e.g. a CI secret written to disk)
PASSPHRASE_ENV = "MPSEAL_RELEASE_KEY_PASSPHRASE"  # optional: encrypts the key file
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9_][A-Za-z0-9_./-]*$")


class ReleaseError(MpsealError):
    pass


def key_file_path(path=None):
    return path or os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE


def _passphrase():
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def public_bytes(public_key):
    """The 65-byte SEC1 uncompressed point (0x04 | x | y), as config.json lists it (hex)."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def key_id(public):
    """First 8 bytes of sha256(x | y), hex: names the key in release.sig."""
    if len(public) == 65:
        public = public[1:]
    return hashlib.sha256(public).hexdigest()[:16]


def new_key(path=None):
    """Makes a P-256 release key into `path` (0600, never overwritten);
    returns the public key bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = key_file_path(path)
    private = ec.generate_private_key(ec.SECP256R1())
    passphrase = _passphrase()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ReleaseError("%s already exists: a release key is never overwritten (boards trust it); "
                           "move it away first if you really mean to replace it" % path)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_bytes(private.public_key())


def load_key(path=None):
    """The private key from `path`; refuses a file others can read."""
    from cryptography.hazmat.primitives import serialization

    path = key_file_path(path)
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            pem = f.read()
    except FileNotFoundError:
        raise ReleaseError("release key %s not found: make one with 'mpseal release-key new' "
                           "(or point %s at it)" % (path, KEY_FILE_ENV))
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ReleaseError("release key %s is readable by others (mode %o): chmod 600 it" % (path, mode & 0o777))
    try:
        return serialization.load_pem_private_key(pem, password=_passphrase())
    except (ValueError, TypeError) as exc:
        raise ReleaseError("cannot read release key %s (%s): wrong file, or set %s" % (path, exc, PASSPHRASE_ENV))


def manifest_text(board, version, name, files, rom=None):
    """release.txt's bytes. files: [{"path", "size", "sha256"}] (a build
    manifest's); rom: {/lib path: {"size", "sha256"}} of the /rom compiles
    (the build manifest's romfs "files"), each signed right after its file."""
    if not _NAME.match(board or ""):
        raise ReleaseError("board name %r: letters, digits, . _ + - only" % board)
    if not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ReleaseError("release version must be an integer 1..%d, got %r" % (MAX_VERSION, version))
    if not _NAME.match(name or ""):
        raise ReleaseError("release name %r: 1..32 of letters, digits, . _ + - (e.g. 1.2.0)" % name)
    lines = [FORMAT, "board " + board, "version %d" % version, "name " + name]
    seen = set()
    for f in files:
        path = f["path"]
        if not _PATH.match(path) or ".." in path or path in seen:
            raise ReleaseError("build manifest: bad or repeated path %r" % path)
        seen.add(path)
        if not re.match(r"^[0-9a-f]{64}$", f["sha256"]):
            raise ReleaseError("build manifest: bad sha256 for %s" % path)
        lines.append("file %s %d %s" % (f["sha256"], int(f["size"]), path))
        alt = (rom or {}).get(path)
        if alt is not None:
            if not path.startswith("/lib/") or not re.match(r"^[0-9a-f]{64}$", alt["sha256"]):
                raise ReleaseError("build manifest: bad romfs entry for %s" % path)
            lines.append("rom %s %d" % (alt["sha256"], int(alt["size"])))
    return ("\n".join(lines) + "\n").encode()


def sign(private, data):
    """release.sig's bytes for `data`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return ("%s %s\n" % (key_id(public_bytes(private.public_key())), signature.hex())).encode()


def released_versions(releases, board):
    folder = os.path.join(releases, board)
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _check_built(local, sha256):
    """Refuses a file of the build that is gone or changed since `mpseal build`."""
    try:
        with open(local, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        raise ReleaseError("%s is in the build manifest but missing: run 'mpseal build' again" % local)
    if digest != sha256:
        raise ReleaseError("%s changed since the build (sha256 differs): run 'mpseal build' again" % local)


def make_release(build_dir, manifest, version, name, releases, key_file=None, board=None):
    """Turns a `mpseal build` output into <releases>/<board>/<version>/ (made
    in a staging folder and renamed: a failure leaves nothing half-made).
    Returns (release folder, sha256 hex of release.txt)."""
    board = board or manifest["board"]
    rom = manifest.get("romfs")
    text = manifest_text(board, version, name, manifest["files"], rom and rom.get("files"))
    existing = released_versions(releases, board)
    if existing and version <= existing[-1]:
        raise ReleaseError("version %d is not above the latest release for %s (%d): versions only grow "
                           "(boards refuse anything at or below the version they run)" % (version, board, existing[-1]))
    private = load_key(key_file)
    for f in manifest["files"]:
        _check_built(os.path.join(build_dir, f["path"].lstrip("/")), f["sha256"])
    if rom:  # the /rom hashes signed below were taken from this image's files at build time
        _check_built(os.path.join(build_dir, rom["path"]), rom["sha256"])
    parent = os.path.join(releases, board)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".release-", dir=parent)
    try:
        for f in manifest["files"]:
            target = os.path.join(staging, FILES, f["path"].lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(build_dir, f["path"].lstrip("/")), target)
        with open(os.path.join(staging, MANIFEST), "wb") as fh:
            fh.write(text)
        with open(os.path.join(staging, SIGNATURE), "wb") as fh:
            fh.write(sign(private, text))
        final = os.path.join(parent, str(version))
        os.rename(staging, final)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return final, hashlib.sha256(text).hexdigest()
