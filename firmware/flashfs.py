# Files on the board's flash that must survive a power cut mid-write.
# write_atomic: write <path>.tmp completely, then rename it over <path>; a cut
# before the rename leaves the old file, after it the new one. (On FAT the
# rename is remove + rename, so readers fall back to <path>.tmp when <path>
# is missing; read_atomic does that.)
import os

import hw

TMP_SUFFIX = ".tmp"


def write_atomic(path, data):
    tmp = path + TMP_SUFFIX
    with open(tmp, "wb") as f:
        f.write(data)
    hw.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()


def read_atomic(path):
    """Returns the file's bytes, or None when neither it nor its .tmp exists."""
    for name in (path, path + TMP_SUFFIX):
        try:
            with open(name, "rb") as f:
                return f.read()
        except OSError:
            pass
    return None


def ensure_dir(path):
    try:
        os.stat(path)
    except OSError:
        os.mkdir(path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
