# Writes changed settings (set-interval, rotate-key) back into /config.json.
# Its own small module, loaded only while a command is applied: not in
# config.py, whose checking code (~6 KB of heap) would have to load for it
# with the heap at its fullest, and not in commands.py, which App.rotate
# does not need to load (docs/firmware.md "Memory and size").
import binascii
import json

import flashfs


def save(values):
    """Writes `values` ({key: value}, e.g. {"interval_s": 30}; bytes values
    are written as hex) into /config.json. The file is read again rather than
    kept in RAM, so keys this firmware does not know (other transports'
    sections) survive. The file was checked at boot, and a command's values
    by commands.py."""
    raw = flashfs.read_atomic("/config.json")
    if raw is None:
        raise OSError("/config.json is missing")
    # No .decode() / .encode() copies: MicroPython's json reads bytes, and a
    # str is a buffer its files write as UTF-8. A command runs mid-cycle with
    # the heap at its fullest, and each copy is a block of the file's size.
    data = json.loads(raw)
    raw = None
    for key in values:
        value = values[key]
        data[key] = binascii.hexlify(value).decode() if isinstance(value, bytes) else value
    flashfs.write_atomic("/config.json", json.dumps(data))
