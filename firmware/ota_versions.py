# The over-the-air update state and the switch between app versions
# (docs/ota.md). The first stage, with the few lines in boot.py that load it:
# it lives at the flash root (/ota_versions.mpy), outside the /lib an update
# replaces, and is never changed by an update (like a bootloader). Loaded
# only when needed: by boot.py at boot and by the update agent
# (ota_updater.py); unloaded after. (A trial boot's check after each cycle is
# the much smaller ota_trial_check.py.)
#
# The running app is always /lib (its .mpy files, the mpseal package in
# /lib/mpseal), so module paths and everything else look the same to every
# version. An update is fetched into /ota/staging; the switch renames folders:
#   swap in  : /lib -> /ota/previous, /ota/staging -> /lib
#   roll back: /lib -> /ota/removed,  /ota/previous -> /lib
# Each rename is atomic on the filesystem, and /ota/state.txt says which
# switch is under way, so the boot after a power cut at any point finishes it
# (each step is done only if its source folder is still there): a boot runs
# one complete version, never a mix. Data files (/config.json, /seq.dat,
# /cmdseq.dat, /queue) stay at the root, shared by all versions: sequence
# numbers go on from the same reservation whatever runs.
#
# /ota/state.txt, one line, replaced atomically (tmp + rename, flashfs's rule):
#   ota-state-1 <phase> <version> <trial version> <boots> <max boots> <floor> ota-state-1
# phase 0 confirmed: /lib is <version>; 1 swapping in <trial version>; 2 on
# trial: /lib is <trial version>, /ota/previous is <version>; 3 rolling back
# to <version>. A trial boot is counted BEFORE it runs, so a crash at import,
# a hang the watchdog ends, or a release that never gets an ack (it resets
# itself: ota_trial_check.py) all end in a rollback after <max boots> boots. The trial is
# confirmed once a reading sealed by it is acked, which also raises <floor>,
# the anti-rollback counter: no offer at or below it is taken. The marker at
# both ends makes a torn line unreadable, never another valid state.
#
# Module names are longer than 10 characters for the same reason: the
# app's lazy.call("ota_versions", ...) then interns nothing until it runs.
# Heap: every name a loaded module uses is interned for good, and a UDP board
# is a few names short of the pool's next doubling (~3.6 KB;
# docs/firmware.md "Memory and size"). So names here are ones the app already
# has (boot, check, save, value, x, a, b ...), phases are integers, and file
# paths are longer than 10 characters (shorter string constants are interned).
import os

_STATE = "/ota/state.txt"
# Folders (as literals: a global name would be interned; ota_updater.py names
# the first two too): "/ota/staging" (the next version, being fetched),
# "/ota/previous" (the version before, kept during a trial), "/ota/removed"
# (a version rolled back, until removed).


def _read(path):
    for x in (path, path + ".tmp"):  # .tmp: on FAT the old file is removed before the rename
        try:
            with open(x) as f:
                return f.read()
        except OSError:
            pass
    return None


def rename(path, value):
    # new name relative to / (the current folder at boot): the unix port's
    # VfsPosix resolves two absolute paths into one shared buffer (hw_unix.rename)
    os.rename(path, value[1:])


def write_atomic(path, value):
    # flashfs.write_atomic's rule, without importing flashfs: at boot this
    # runs before the switch, and an app module loaded now would be the old
    # version's for the whole boot.
    with open(path + ".tmp", "wb") as f:  # "wb", not "w": one name fewer (a str writes as its UTF-8)
        f.write(value)
    try:
        os.remove(path)  # FAT cannot rename onto a file; readers fall back to .tmp
    except OSError:
        pass
    rename(path + ".tmp", path)


def remove(path):
    """Removes file or folder `path` with everything in it; nothing if absent."""
    try:
        if not os.stat(path)[0] & 0x4000:  # a file
            os.remove(path)
            return
    except OSError:
        return
    for x in os.listdir(path):
        remove(path + "/" + x)
    os.rmdir(path)


def _get(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def save(value):
    """value: [phase, version, trial version, boots, max boots, floor]"""
    write_atomic(_STATE, "ota-state-1 %d %d %d %d %d %d ota-state-1\n" % tuple(value))


def load():
    raw = _read(_STATE)
    x = raw.split() if raw else ()
    if len(x) != 8 or x[0] != "ota-state-1" or x[7] != "ota-state-1":
        return None  # none or unreadable: /lib runs as it is
    try:
        return [int(a) for a in x[1:7]]
    except ValueError:
        return None


def count(value):
    """Adds one to the count of `value` (staged, confirmed_trials,
    rolled_back, a refusal reason) kept in /ota/counts.txt as "reason:n ..."."""
    values = {}
    for x in (_read("/ota/counts.txt") or "").split():
        a, _, b = x.partition(":")
        if b.isdigit():
            values[a] = int(b)
    values[value] = values.get(value, 0) + 1
    write_atomic("/ota/counts.txt", " ".join(x + ":" + str(values[x]) for x in values) + "\n")


def boot():
    """boot.py, at every boot of a board with update state, before any app
    module loads: finishes a switch a power cut interrupted, counts a trial
    boot or rolls it back. Returns lazy.state for this boot: version << 2 |
    2 (an offer waits) | 1 (on trial)."""
    x = update()
    # A ROMFS board (docs/ota.md "ROMFS boards"): /rom comes first on
    # sys.path, and an update is a /lib. A /lib the agent fetched as a delta
    # over the image (/lib/rom-delta.txt, swapped in with its folder) holds
    # the modules that differ from the image's, and runs before /rom, whose
    # other modules the agent checked are the release's bytes; any other
    # updated /lib (app.mpy) is whole and /rom goes. Rolled back to the
    # factory version, /lib is empty again and /rom runs.
    if _get("/lib/rom-delta.txt"):
        path(True)
    elif _get("/lib/app.mpy"):
        path(False)
    return x


def path(x):
    """sys.path for this boot's /lib on a ROMFS board: x True (a delta over
    the image) puts the /rom entries after /lib, False takes them off. Its
    name (one MicroPython has built in) is also how the agent knows this
    first stage runs a delta (an older one would put /rom first: a mix)."""
    import sys

    for a in [a for a in sys.path if a[:4] == "/rom"]:
        sys.path.remove(a)
        if x:
            sys.path.append(a)


def update():
    x = load()
    b = 2 if _get("/ota-offer.bin") else 0
    if x is None:
        return b
    if x[0] == 1:  # swapping in x[2]
        if _get("/ota/staging"):
            if _get("/lib"):
                rename("/lib", "/ota/previous")
            elif not _get("/ota/previous"):
                # No /lib (a ROMFS board's factory version is /rom): an
                # empty one is the version to roll back to.
                os.mkdir("/ota/previous")
            rename("/ota/staging", "/lib")
        x[0] = 2
        x[3] = 0
        remove("/ota/confirmed.txt")  # an older version's: confirms nothing now, but never let it
        save(x)
    elif x[0] == 3:  # rolling back to x[1]
        if _get("/ota/previous"):
            if _get("/lib"):
                remove("/ota/removed")
                rename("/lib", "/ota/removed")
            rename("/ota/previous", "/lib")
        print("ota: v%d not confirmed after %d boots: rolled back to v%d" % (x[2], x[3], x[1]))
        save([0, x[1], 0, 0, 0, x[5]])
        count("rolled_back")
        remove("/ota/removed")
        return x[1] << 2 | b
    if x[0] == 2:  # on trial
        if _read("/ota/confirmed.txt") == str(x[2]):  # ota_trial_check saw its readings acked
            x = [0, x[2], 0, 0, 0, max(x[5], x[2])]
            save(x)
            count("confirmed_trials")
        elif x[3] >= x[4]:
            x[0] = 3
            save(x)
            return update()
        else:
            x[3] += 1
            save(x)
            print("ota: v%d on trial, boot %d of %d" % (x[2], x[3], x[4]))
            return x[2] << 2 | 1 | b
    if _get("/ota/previous"):  # the version before a confirmed trial: not needed any more
        remove("/ota/previous")
    print("ota: v%d confirmed" % x[1])
    return x[1] << 2 | b
