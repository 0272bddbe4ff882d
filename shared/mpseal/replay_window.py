# Sliding anti-replay window of 64 sequence numbers (RFC 4303 section 3.4.3
# and its appendix A): `highest` is the largest sequence number accepted; bit i
# of `bitmap` is set when sequence number highest - i was accepted, and the
# bitmap SHIFTS when highest moves (this is not RFC 6479's ring of blocks; a
# 64-bit shift is one operation on both runtimes). docs/protocol.md section 5.
# Sequence number 0 never gets here (parse_header refuses it as bad_seq); the
# initial state marks it as seen all the same.
import struct

from mpseal.aes import const
from mpseal.packet import InvalidPacket

WINDOW_SIZE = 64
_MASK = (1 << WINDOW_SIZE) - 1
_STATE = ">III"  # highest, bitmap high word, bitmap low word
_STATE_SIZE = const(12)


class ReplayWindow:
    def __init__(self, highest=0, bitmap=1):
        self.highest = highest
        self.bitmap = bitmap

    def check(self, seq):
        """Raises InvalidPacket(replay|too_old) if seq must be refused; does not
        change the window (the caller updates only once the packet is stored)."""
        if seq > self.highest:
            return
        offset = self.highest - seq
        if offset >= WINDOW_SIZE:
            raise InvalidPacket("too_old", "seq %d, window starts after %d" % (seq, self.highest - WINDOW_SIZE))
        if (self.bitmap >> offset) & 1:
            raise InvalidPacket("replay", "seq %d already accepted" % seq)

    def update(self, seq):
        """Marks seq as accepted (call check() first)."""
        if seq > self.highest:
            shift = seq - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & _MASK if shift < WINDOW_SIZE else 1
            self.highest = seq
        else:
            self.bitmap |= 1 << (self.highest - seq)

    def accept(self, seq):
        self.check(seq)
        self.update(seq)

    def to_bytes(self):
        return struct.pack(_STATE, self.highest, self.bitmap >> 32, self.bitmap & 0xFFFFFFFF)

    @classmethod
    def from_bytes(cls, state):
        if state is None or len(state) == 0:
            return cls()
        if len(state) != _STATE_SIZE:
            raise ValueError("replay window state must be %d bytes" % _STATE_SIZE)
        highest, high, low = struct.unpack(_STATE, state)
        return cls(highest, (high << 32) | low)
