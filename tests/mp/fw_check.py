# Tiny assertion helpers for the firmware unit scripts (run by
# tests/test_firmware_units.py under the MicroPython unix port).
import os


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return str(exc)
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, fn))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def wipe(path="/"):
    for entry in os.ilistdir(path):
        full = (path.rstrip("/") + "/" + entry[0])
        if entry[1] == 0x4000:
            wipe(full)
            os.rmdir(full)
        else:
            os.remove(full)
