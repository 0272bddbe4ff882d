# The frames transport_lorawan keeps in /unacked (one file per frame, named
# by its seq in hex) and the cumulative acks (docs/protocol.md, type 6) that
# release them. A board gets an ack a few times a day (TTN's fair use), so
# this is loaded for each and unloaded right after (lazy.py), as for the
# first frame after boot (tidy). downlink.py has checked the ack: authentic,
# host seq fresh; its commands go the usual way (commands.py).
#   payload = highest stored seq u32 | bitmap u64 | command*
#   bit i of the bitmap (byte 11 - i // 8 of the payload, bit i % 8): seq
#   highest - i is stored. It is the host's replay window: a seq 64 or more
#   below highest is refused there as too_old, so it can never be stored.
import os

import flashfs
from micropython import const
from transport_lorawan import UNACKED

_WINDOW = const(64)


def kept():
    """The seqs in /unacked, ascending (a .tmp left by a cut mid-write is removed)."""
    flashfs.ensure_dir(UNACKED)
    seqs = []
    for entry in os.ilistdir(UNACKED):
        name = entry[0]
        if "." in name:
            flashfs.remove(UNACKED + "/" + name)
            continue
        try:
            seqs.append(int(name, 16))
        except ValueError:
            pass
    seqs.sort()
    return seqs


def tidy(t, limit):
    """Counts the kept frames into t.kept, dropping the oldest beyond `limit`
    (with a console line each: a reading whose fate the board no longer tracks)."""
    seqs = kept()
    while len(seqs) > limit:
        seq = seqs.pop(0)
        flashfs.remove(UNACKED + "/%08x" % seq)
        print("mpseal lorawan: frame %d dropped before a cumulative ack named it (%d kept at most)" % (seq, limit + 1))
    t.kept = len(seqs)


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
    t.kept = len(seqs) - released - lost
    t.missing = missing or None
    print("mpseal lorawan: cumulative ack up to %d: %d released, %d to resend, %d too old" % (highest, released, len(missing), lost))
