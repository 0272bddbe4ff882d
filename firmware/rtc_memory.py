# What survives a deep sleep: the counters and the next sequence number, kept
# in the ESP8266's RTC memory (cleared by a power cut, when the flash
# reservation in seqstore takes over). Only interval mode sleeps, so only it
# imports this module (app.py): an always-on board never loads its code or
# interns its names (docs/firmware.md "Memory and size").
import struct

import hw
from counters import NAMES

# magic b"mps1" | device id | next seq | one u32 per counter
_FORMAT = ">4sII%dI" % len(NAMES)


def save(counters, device_id, next_seq):
    values = [getattr(counters, name) & 0xFFFFFFFF for name in NAMES]
    hw.RTC().memory(struct.pack(_FORMAT, b"mps1", device_id, next_seq, *values))


def load(counters, device_id):
    """After a deep-sleep wake: restores `counters` and returns the next
    sequence number kept in RTC memory; None when there is nothing valid
    (memory from another device id, or from an older firmware)."""
    raw = hw.RTC().memory()
    if len(raw) != struct.calcsize(_FORMAT):
        return None
    fields = struct.unpack(_FORMAT, raw)
    if fields[0] != b"mps1" or fields[1] != device_id:
        return None
    for i in range(len(NAMES)):
        setattr(counters, NAMES[i], fields[3 + i])
    return fields[2]
