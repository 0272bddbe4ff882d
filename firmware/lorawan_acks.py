# A cumulative ack (docs/protocol.md, type 6) applied to the LoRa transport's
# frames that went on air (transport_lorawan: /unacked). A board gets one a
# few times a day (TTN's fair use), so this is loaded for each and unloaded
# right after (lazy.py). downlink.py has checked it: authentic, host seq
# fresh; its commands go the usual way (commands.py).
#   payload = highest stored seq u32 | bitmap u64 | command*
#   bit i of the bitmap (byte 11 - i // 8 of the payload, bit i % 8): seq
#   highest - i is stored. It is the host's replay window: a seq 64 or more
#   below highest is refused there as too_old, so it can never be stored.
from micropython import const

_WINDOW = const(64)


def take(t, payload):
    """Releases the frames `payload` names stored, drops the ones the host
    can no longer take, and sets t.missing to the gaps (oldest first)."""
    highest = int.from_bytes(payload[:4], "big")
    unacked = t.unacked
    missing = []
    released = lost = 0
    for seq in list(unacked.seqs):
        if seq > highest:
            continue  # went out after the host made this ack: the next one says
        i = highest - seq
        if i < _WINDOW and payload[11 - (i >> 3)] >> (i & 7) & 1:
            unacked.remove(seq)
            released += 1
        elif i >= _WINDOW:
            unacked.remove(seq)
            lost += 1
        else:
            missing.append(seq)
    unacked.dropped += lost
    t.missing = missing
    print("mpseal lorawan: cumulative ack up to %d: %d released, %d to resend, %d too old" % (highest, released, len(missing), lost))
