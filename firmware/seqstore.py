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
from micropython import const

import flashfs

_BLOCK = const(64)  # numbers reserved per flash write; see docs/firmware.md for the trade-off


class SequenceStoreError(OSError):
    pass


class SequenceStore:
    def __init__(self, path="/seq.dat", block=_BLOCK, resume=None):
        """`resume`: the exact next number kept in RTC memory over a deep
        sleep, or None after a power cut; trusted only inside the current
        reservation."""
        self.path = path
        self.block = block
        self.flash_writes = 0
        best = None
        found = False
        for name in (self.path, self.path + flashfs.TMP_SUFFIX):
            try:
                with open(name, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            found = True
            # "R R\n": the number written twice, so a torn write (a prefix,
            # or zeros) never parses as a plausible smaller value.
            try:
                first, second = raw.split()
                value = int(first)
                if 0 < value == int(second) and (best is None or value > best):
                    best = value
            except ValueError:
                pass
        if best is None:
            if found:
                # Starting again at 1 would reuse numbers the host has seen:
                # every reading would be refused as a replay. Stop instead.
                raise SequenceStoreError("%s is unreadable: re-provision the board (new key) to reset the counter" % self.path)
            best = 1  # a freshly provisioned board
        self.limit = self.next_seq = best
        if resume is not None and best - block <= resume <= best:
            self.next_seq = resume

    def next(self):
        seq = self.next_seq
        if seq >= self.limit:
            limit = seq + self.block
            flashfs.write_atomic(self.path, b"%d %d\n" % (limit, limit))
            self.flash_writes += 1
            self.limit = limit
        self.next_seq = seq + 1
        return seq
