# Applies what host commands noted (commands.py) once the exchange is over
# (App.poll), writes changed settings (set-interval, rotate-key) back into
# /config.json, then records the host seq in /cmdseq.dat. Its own module,
# loaded only then: not in app.py, where it would take heap for good, and
# not in config.py, whose checking code (~6 KB of heap) would have to load
# for it (docs/firmware.md "Memory and size").
import binascii
import gc
import json
import sys
from micropython import const

import mpseal

import flashfs
import lazy

_TRIES = const(3)  # polls a noted command may fail to apply (MemoryError, flash full) before it is reported


def apply(app):
    """Applies what commands noted (app.settings, keyed by opcode:
    commands.py) and empties it: set-interval and rotate-key are written
    into /config.json before a new key is used (its keys are derived
    here first), so a failure leaves key and file as they were; the host
    seq is written to /cmdseq.dat last, once everything took effect. A
    failure is tried again on the next call, and after _TRIES it is
    printed and counted in `errors`."""
    pending = app.settings
    d = app.downlink
    try:
        values = {}
        rotation = pending.get(4)  # rotate-key: new epoch u8 | new 32-byte master key
        if rotation:
            if 5 not in pending:  # its keys, derived first: if that fails, nothing has changed
                # Keys of an earlier rotation: replaced below anyway, and
                # their heap is needed now (three sets do not fit in 48k).
                d.previous = None
                if not app.outbox.seqs:
                    # Nothing queued under the current key either: its
                    # heap goes to the file write too (derived again
                    # from cfg.key below should the write fail).
                    app.keys = d.keys = None
                gc.collect()
                pending[5] = mpseal.DeviceKeys(rotation[1:])
                lazy.unload(("mpseal.hkdf",))
            values["epoch"] = rotation[0]
            values["key"] = rotation[1:]
        if 2 in pending:  # set-interval
            values["interval_s"] = pending[2]
        if values:
            gc.collect()
            save(values)
        if rotation:
            # The old keys open acks for packets queued under them, so they
            # stay in RAM only while the queue holds any (flush drops them).
            d.previous = (d.epoch, d.keys) if app.outbox.seqs else None
            app.keys = d.keys = pending.pop(5)
            app.cfg.key = values["key"]
            app.cfg.epoch = d.epoch = values["epoch"]
            pending.pop(4)
        seq = pending[0]
        flashfs.write_atomic("/cmdseq.dat", b"%d %d\n" % (seq, seq))  # seqstore.read's format
        pending.clear()
    except (MemoryError, OSError) as exc:
        if d.keys is None:  # the file still names the current key: seal under it until the write succeeds
            pending.pop(5, None)
            gc.collect()
            app.keys = d.keys = mpseal.DeviceKeys(app.cfg.key)
            lazy.unload(("mpseal.hkdf",))
        pending[-1] = tries = pending.get(-1, 0) + 1
        if tries >= _TRIES:
            sys.print_exception(exc)
            app.counters.errors += 1
            pending.clear()



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
