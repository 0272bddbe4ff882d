# Device -> host sequence numbers that are never reused, even across power
# cuts, with one flash write per BLOCK readings instead of one per reading.
#
# /seq.dat holds a reservation R: every number below R may have been used,
# none at or above R has. Before handing out R itself the store writes
# R + BLOCK (atomically), so a cut at any instant leaves a file whose R is
# above every number that went out. After a power cut the board starts at R:
# it skips at most BLOCK - 1 unused numbers, always FORWARD, which the host's
# replay window accepts (only numbers older than the newest one it has seen
# can be refused, and a fresh reading is always the newest).
# After a deep sleep the exact next number comes from RTC memory instead
# (see rtc_memory.py), so an interval-mode board does not write on every wake.
#
# A missing, torn or unreadable /seq.dat is never guessed from: the store is
# then *unknown* (next() gives None) until the host answers a resync request
# with the highest number it accepted (docs/protocol.md section 5; recovery.py
# sends it, recovery.py takes the answer). Provisioning writes "1 1", so a
# missing file means a lost one. /cmdseq.dat (commands.py) is the same "N N"
# format, read with read().
from micropython import const

import flashfs

_BLOCK = const(64)  # numbers reserved per flash write; see docs/firmware.md for the trade-off
_LAST = const(0xFFFFFFFF)  # mpseal.packet.MAX_SEQ: the last number a board seals
# Why a store is unknown: the resync request's reason byte
# (mpseal.control.RESYNC_REASONS; recovery.py). Constants, not names: every
# name this module defines is interned on the board for good.
_MISSING = const(1)
_UNREADABLE = const(2)


def read(path):
    """(value, 0): the number in `path` ("N N\\n": written twice, so a torn
    write - a prefix, or zeros - never parses as a plausible smaller value)
    or in its .tmp, the larger if both are good; else (None, 1) when neither
    exists, (None, 2) when what exists is unreadable."""
    best = None
    found = False
    for name in (path, path + flashfs.TMP_SUFFIX):
        try:
            with open(name, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        found = True
        try:
            first, second = raw.split()
            value = int(first)
            if 0 <= value == int(second) and (best is None or value > best):
                best = value
        except ValueError:
            pass
    if best is None:
        return None, _UNREADABLE if found else _MISSING
    return best, 0


class SequenceStore:
    def __init__(self, path="/seq.dat", block=_BLOCK, resume=None):
        """`resume`: the exact next number kept in RTC memory over a deep
        sleep, or None after a power cut; trusted only inside the current
        reservation. Unknown store: next_seq None and `limit` the reason
        (1 missing, 2 unreadable) until recovery.py sets both from a resync."""
        self.path = path
        self.block = block
        self.flash_writes = 0
        best, why = read(path)
        if best == 0:  # never a valid reservation
            best, why = None, _UNREADABLE
        self.next_seq = best
        self.limit = why if best is None else best
        if best is not None and resume is not None and best - block <= resume <= best:
            self.next_seq = resume

    def next(self):
        """The next sequence number, or None: unknown (see __init__) or used
        up (next_seq > 2**32-1). Raises OSError when the reservation cannot
        be written (flash full): nothing was handed out, the next call tries
        again, and the file on flash still holds a valid reservation."""
        seq = self.next_seq
        if seq is None or seq > _LAST:
            return None
        if seq >= self.limit:
            limit = min(seq + self.block, _LAST + 1)
            flashfs.write_atomic(self.path, b"%d %d\n" % (limit, limit))
            self.flash_writes += 1
            self.limit = limit
        self.next_seq = seq + 1
        return seq
