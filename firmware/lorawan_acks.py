# The frames transport_lorawan keeps in /unacked (one file per frame, named
# by its seq in hex) and the cumulative acks (docs/protocol.md, type 6) that
# release them. A board gets an ack a few times a day (TTN's fair use), so
# this is loaded for each and unloaded right after (lazy.py): its names and
# strings are interned only once an ack came. downlink.py has checked the ack: authentic,
# host seq fresh; its commands go the usual way (commands.py).
#   payload = highest stored seq u32 | bitmap u64 | command*
#   bit i of the bitmap (byte 11 - i // 8 of the payload, bit i % 8): seq
#   highest - i is stored. It is the host's replay window: a seq 64 or more
#   below highest is refused there as too_old, so it can never be stored.
import time

import flashfs
import lorawan
import outbox
from micropython import const
from transport_lorawan import UNACKED

_WINDOW = const(64)


def kept():
    """The seqs in /unacked, ascending: outbox.Outbox's listing (a .tmp left
    by a cut mid-write is removed), on a throwaway object."""
    return outbox.Outbox(0, UNACKED).seqs


def take(t, payload):
    """Releases the frames `payload` names stored, drops the ones the host
    can no longer take, and sets t.missing to the gaps (oldest first)."""
    highest = int.from_bytes(payload[:4], "big")
    missing = []
    released = lost = 0
    seqs = kept()
    for seq in seqs:
        if seq > highest:
            continue  # went out after the host made this ack: the next one says
        i = highest - seq
        if i < _WINDOW and payload[11 - (i >> 3)] >> (i & 7) & 1:
            released += 1
        elif i >= _WINDOW:
            lost += 1
        else:
            missing.append(seq)
            continue
        flashfs.remove(UNACKED + "/%08x" % seq)
    t.missing = missing or None
    print("mpseal lorawan: cumulative ack up to %d: %d released, %d to resend, %d too old" % (highest, released, len(missing), lost))


def resend(t):
    """The oldest gap of t.missing, under a fresh FCnt (t.transmit), when a
    sub-band may send; the same sealed bytes, so the host stores it once."""
    missing = t.missing
    if lorawan.pick(t.region, t.duty, time.ticks_ms()) is None:
        return
    seq = missing[0]
    packet = flashfs.read_atomic(UNACKED + "/%08x" % seq)
    if packet is None:  # gone meanwhile (64 newer frames went out)
        missing.pop(0)
        return
    fcnt = t.transmit(seq, packet, True)
    if fcnt:
        if missing and missing[0] == seq:
            missing.pop(0)
        print("mpseal lorawan: resent %d as FCnt %d" % (seq, fcnt))
