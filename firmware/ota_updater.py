# The update agent (docs/ota.md): takes the offer an update-offer command
# left in /ota-offer.bin, fetches that release into /ota/staging, checks it,
# and has the first stage (ota_versions.py) swap it in as the trial version at
# the next boot. Runs from boot.py before the app's modules load, so the
# heap is the agent's; it always ends in a reset.
#
# Steps, in this order (a refusal names its reason, counted in /ota/counts.txt):
#  1. a switch or trial under way: busy; offer version at or below the running
#     one or the anti-rollback floor: downgrade
#  2. fetch release.txt; its sha256 must be the offered one: manifest_mismatch
#  3. fetch release.sig; its key id must be one of config "ota.keys": unknown_key;
#     ECDSA P-256 over release.txt (ecdsa_p256.py): bad_signature
#  4. release.txt: format, "board" = config "ota.board": wrong_board; version = offered
#  5. each /lib file into /ota/staging/lib/... (HTTP Range: a drop or a power cut
#     resumes where the file ends), then its size and sha256: bad_hash (one
#     refetch from byte 0 first). On a ROMFS board (_rom_units) only the
#     modules whose bytes differ from the image's signed "rom" hash; the
#     others run from /rom (/ota/staging/rom-delta.txt says so)
#  6. all good: /ota/state.txt says "swap in" (one atomic write), reset; the
#     first stage renames the folders before anything loads.
# Until step 6 nothing the boot reads has changed: a power cut at any byte
# leaves the old version booting, and the next boot resumes the download.
# Link trouble keeps the offer for MAX_ATTEMPTS boots that fetch no byte
# (fetch_failed), then drops it.
import binascii
import gc
import hashlib
import os
import socket
import struct
import time

import ota_versions

OFFER = "/ota-offer.bin"  # the command's argument as it came: version u32 | sha256 | URL
ATTEMPTS = "/ota/attempts.txt"  # "<offer sha256 hex> <boots that tried it>"
MAX_ATTEMPTS = 5  # boots in a row that fetch no byte, then the offer is dropped
DEFAULT_TRIAL_BOOTS = 3
CHUNK = 512  # bytes per socket read / flash write: the heap never holds more of a file
TIMEOUT_S = 10
MAX_SIG = 256
MAX_MANIFEST = 16384  # ~160 files, ~100 with a ROMFS build's rom lines


class Refused(Exception):
    pass


def _buf():
    global _chunk
    if _chunk is None:
        _chunk = bytearray(CHUNK)
    return _chunk


_chunk = None
_high = 0  # heap high-water during the update (gc.mem_alloc() at each chunk), printed at the end
# The offer's sha256 until this attempt has written its first byte: then the
# attempt count goes back to 1 (a boot that makes progress is no crash loop;
# the count is on flash, so it must be written while the attempt runs).
_progress = None


def _heap():
    global _high
    value = gc.mem_alloc()
    if value > _high:
        _high = value


def _split(url):
    # http://host[:port]/path/ -> (host, port, path); only plain HTTP: the
    # signature, not the link, proves where the release comes from.
    if not url.startswith("http://"):
        raise Refused("bad_url")
    rest = url[7:]
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, _, port = hostport.partition(":")
    return host, int(port) if port else 80, path


def fetch(url, name, path, size, exact=True):
    """Appends <url><name> to file `path` from the byte the file already has
    (Range request), up to `size` bytes in all (exact: the file has `size`
    bytes, fewer is a dropped link; else `size` is only a cap). Raises
    OSError for link trouble (the caller keeps the offer)."""
    host, port, base = _split(url)
    try:
        have = os.stat(path)[6]
    except OSError:
        have = 0
    if have >= size:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        sock.connect(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1])
        sock.write(b"GET %s%s HTTP/1.0\r\nHost: %s\r\nRange: bytes=%d-\r\n\r\n" % (base, name, host, have))
        status = sock.readline().split(None, 2)
        code = int(status[1]) if len(status) > 1 else 0
        while True:
            line = sock.readline()
            if not line or line == b"\r\n":
                break
        if code == 200:
            have = 0  # the server ignored the range: start over
        elif code != 206:
            if code == 416:  # nothing beyond what we have
                return
            raise OSError("HTTP %d for %s" % (code, name))
        buf = _buf()
        view = memoryview(buf)
        with open(path, "ab" if have else "wb") as f:
            while have < size:
                n = sock.readinto(buf, min(CHUNK, size - have))
                if not n:
                    break
                f.write(view[:n])
                have += n
                _heap()
                _made_progress()
    finally:
        sock.close()
    if exact and have < size:
        raise OSError("connection closed at byte %d of %s" % (have, name))  # kept: the next try resumes there


def sha256_of(path):
    h = hashlib.sha256()
    buf = _buf()
    view = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.digest()


def _mkdirs(path):
    # every folder of `path` (a file's path), /ota included
    i = 0
    while True:
        i = path.find("/", i + 1)
        if i < 0:
            return
        try:
            os.mkdir(path[:i])
        except OSError:
            pass


def _lines(path):
    """release.txt a line at a time (it is never read whole into the heap)."""
    with open(path) as f:
        for line in f:
            yield line.split()


def _check_signature(cfg, folder, digest, url):
    ota = cfg.data.get("ota") or {}
    fetch(url, "release.sig", folder + "/release.sig", MAX_SIG, False)
    with open(folder + "/release.sig") as f:
        parts = f.read().split()
    import ecdsa_p256  # loaded for this check only

    try:
        for text in ota.get("keys", ()):
            raw = binascii.unhexlify(text)
            if len(parts) == 2 and binascii.hexlify(hashlib.sha256(raw[-64:]).digest()[:8]).decode() == parts[0]:
                key = ecdsa_p256.public_key(raw)
                ok = ecdsa_p256.verify_digest(key, binascii.unhexlify(parts[1]), digest)
                _heap()
                if not ok:
                    raise Refused("bad_signature")
                return
    except ValueError:  # bad hex or a malformed key in config.json, or in release.sig
        raise Refused("bad_signature")
    raise Refused("unknown_key")


def _made_progress():
    global _progress
    if _progress is not None:
        digest = _progress
        _progress = None
        _attempts(digest, 1)


def _unit(x):
    # what a path under /lib or /rom imports as: "/mpseal/packet.mpy" ->
    # "mpseal" (a package is found whole in one sys.path entry), "/app.mpy" -> "app"
    return x[1:].split("/")[0].split(".")[0]


def _walk(folder, seen):
    # seen[unit] += 1 for each file under folder (/rom)
    for x in os.ilistdir(folder):
        name = folder + "/" + x[0]
        if x[1] & 0x4000:
            _walk(name, seen)
        else:
            name = _unit(name[4:])
            seen[name] = seen.get(name, 0) + 1


def _rom_units(manifest):
    """A ROMFS board (docs/ota.md "ROMFS boards"): the units (top-level
    modules and packages) of the release that must come from /lib; every
    other one runs from /rom, where each of its files has the sha256 that
    the signed "rom" line after its "file" line names (hashed here, in
    chunks; updates never write the ROMFS partition). None: the whole
    release goes to /lib (no /rom; a first stage that cannot run a delta;
    the image holds a module the release does not: /rom must go)."""
    if not hasattr(ota_versions, "path"):
        return None
    try:
        os.stat("/rom")
    except OSError:
        return None
    lib = []
    rom = {}  # unit -> files of it in /rom with the signed bytes
    name = None  # the /lib file of the line before
    for parts in _lines(manifest):
        if name and parts[:1] == ["rom"] and len(parts) == 3:
            x = "/rom" + name
            try:
                same = os.stat(x)[6] == int(parts[2]) and sha256_of(x) == binascii.unhexlify(parts[1])
            except OSError:  # not in the image
                same = False
            x = _unit(name)
            if same:
                rom[x] = rom.get(x, 0) + 1
            else:
                lib.append(x)
        elif name:
            lib.append(_unit(name))  # no /rom alternative signed
        name = parts[3][4:] if len(parts) == 4 and parts[0] == "file" and parts[3].startswith("/lib/") else None
    if name:
        lib.append(_unit(name))
    seen = {}
    _walk("/rom", seen)
    for x in seen:
        if x in lib:
            continue  # its /lib copy shadows all of it
        if x not in rom:
            return None  # a module this release does not have would stay importable
        if rom[x] != seen[x]:
            lib.append(x)  # a package the release has fewer files of: whole from /lib
    return lib


def _stage(cfg, offer):
    version, digest, url = offer
    folder = "/ota/staging"
    manifest = folder + "/release.txt"
    # A slot holding part of another release is emptied first; the same
    # release's part is kept and resumed.
    try:
        if sha256_of(manifest) != digest:
            ota_versions.remove(folder)
    except OSError:
        pass
    _mkdirs(folder + "/x")
    fetch(url, "release.txt", manifest, MAX_MANIFEST, False)
    if sha256_of(manifest) != digest:
        ota_versions.remove(folder)
        raise Refused("manifest_mismatch")
    _check_signature(cfg, folder, digest, url)
    ota = cfg.data.get("ota") or {}
    header = {}
    for parts in _lines(manifest):
        if len(parts) == 2:
            header[parts[0]] = parts[1]
    if header.get("mpseal-release") != "1":
        raise Refused("bad_manifest")
    if header.get("board") != ota.get("board"):
        raise Refused("wrong_board")
    if header.get("version") != str(version):
        raise Refused("manifest_mismatch")
    units = _rom_units(manifest)
    for parts in _lines(manifest):
        if len(parts) != 4 or parts[0] != "file" or not parts[3].startswith("/lib/"):
            continue  # /boot.py, /main.py: the first stage, never updated (docs/ota.md)
        if units is not None and _unit(parts[3][4:]) not in units:
            continue  # runs from /rom, whose bytes are the signed ones
        want = binascii.unhexlify(parts[1])
        size = int(parts[2])
        path = folder + parts[3][4:]  # /lib/app.mpy -> /ota/staging/app.mpy: the folder becomes /lib
        _mkdirs(path)
        for attempt in (0, 1):
            try:
                done = os.stat(path)[6] == size and sha256_of(path) == want
            except OSError:
                done = False
            if done:
                break
            fetch(url, "files" + parts[3], path, size)
            if os.stat(path)[6] == size and sha256_of(path) == want:
                break
            os.remove(path)  # wrong bytes: once more from the start, then refuse
        else:
            raise Refused("bad_hash")
    # In the folder, so the switch swaps it in (and a rollback out) with the
    # modules it describes: the first stage then puts /rom after /lib.
    if units is None:
        ota_versions.remove(folder + "/rom-delta.txt")
    else:
        ota_versions.write_atomic(folder + "/rom-delta.txt", " ".join(units) + "\n")
        print("ota: from /lib: %s; the rest runs from /rom" % (" ".join(units) or "nothing"))


def run(cfg):
    """boot.py, when /ota/offer.txt exists. Always ends in a reset: into the
    staged release on trial, or (refused, link trouble) into a clean boot of
    the running copy, whose heap then holds none of this module's names."""
    try:
        _run(cfg)
    except Exception as exc:  # noqa: BLE001  a bug or MemoryError here must not stop the board
        import sys

        sys.print_exception(exc)
        ota_versions.count("agent_error")
    import hw

    hw.reset()


def _attempts(digest, value):
    ota_versions.write_atomic(ATTEMPTS, "%s %d\n" % (binascii.hexlify(digest).decode(), value))


def _run(cfg):
    global _progress
    with open(OFFER, "rb") as f:
        raw = f.read()
    state = ota_versions.load() or [0, 0, 0, 0, 0, 0]  # [phase, version, trial version, boots, max boots, floor]
    version = "?"
    try:
        if len(raw) <= 36 or len(raw) > 255:
            raise Refused("bad_offer")
        version = struct.unpack(">I", raw[:4])[0]
        digest = raw[4:36]
        url = raw[36:].decode()
        if state[0]:
            raise Refused("busy")  # a switch or a trial: confirmed or rolled back first
        if version <= max(state[1], state[5]):
            raise Refused("downgrade")  # at or below what runs, or the anti-rollback floor
        seen = (ota_versions._read(ATTEMPTS) or "").split()
        attempts = int(seen[1]) if len(seen) == 2 and seen[0] == binascii.hexlify(digest).decode() else 0
        if attempts >= MAX_ATTEMPTS:
            raise Refused("fetch_failed")
        # counted before trying, so a crash or a power cut counts too; the
        # first byte this attempt writes sets it back to 1 (_progress)
        _attempts(digest, attempts + 1)
        _progress = digest if attempts else None
        print("ota: fetching v%d" % version)
        start = time.ticks_ms()
        _stage(cfg, (version, digest, url))
    except Refused as exc:
        reason = exc.args[0]
        print("ota: refused v%s: %s" % (version, reason))
        ota_versions.count(reason)
        os.remove(OFFER)
        ota_versions.remove(ATTEMPTS)  # a new offer of the same release starts afresh
        return
    except (OSError, ValueError) as exc:  # link trouble, a full flash: the offer stays for the next boot
        print("ota: fetch failed (%s): retrying at the next boot" % exc)
        ota_versions.count("fetch_failed")
        return
    boots = (cfg.data.get("ota") or {}).get("trial_boots", DEFAULT_TRIAL_BOOTS)
    ota_versions.remove("/ota/previous")  # the version before the running one: its place is needed
    ota_versions.save([1, state[1], version, 0, boots, state[5]])  # the switch: one atomic write
    os.remove(OFFER)  # a cut before this: the next boot refuses the offer as "busy"
    ota_versions.remove(ATTEMPTS)
    ota_versions.count("staged")
    print("ota: v%d staged in %d ms, heap high-water %d bytes: resetting to swap it in on trial"
          % (version, time.ticks_diff(time.ticks_ms(), start), _high))
