# Everything the host sends back: acks, and commands riding on them (or
# arriving alone, e.g. by SMS). Replies are opened with the host->device keys
# (mpseal.unseal(..., direction=TO_DEVICE)), so a reading reflected back, a
# forged or a corrupt packet never counts as an ack.
#
# Replay rules (docs/design.md): a RAM replay window refuses any host sequence
# number seen since boot. /cmdseq.dat keeps the highest host sequence number a
# command was executed under (commands.py), so after a reboot a recorded old
# packet with commands is refused by that number. Plain acks are harmless to
# replay: they name a device sequence number that never repeats.
import struct

import mpseal
from mpseal.errors import REPLAY, TOO_OLD

import lazy


class Downlink:
    def __init__(self, keys, epoch, counters, on_command):
        """on_command(opcode, argument bytes) -> True if understood."""
        self.keys = keys
        self.epoch = epoch
        self.previous = None  # (epoch, keys) before a rotate-key, until reboot
        self.counters = counters
        self.on_command = on_command
        self.window = mpseal.ReplayWindow()
        self.executed = None  # highest host seq a command ran under: read from flash by the first command (commands.py)
        self.last_error = None

    def rotate(self, epoch, keys):
        """After rotate-key: the host seals acks under the epoch of the packet
        they acknowledge, so queued packets sealed under the old key still get
        old-key acks; keep that key (in RAM only) to open them."""
        self.previous = (self.epoch, self.keys)
        self.keys = keys
        self.epoch = epoch

    def _keys_for(self, packet):
        if self.previous is not None and len(packet) > 2 and packet[2] == self.previous[0]:
            return self.previous[1]
        return self.keys

    def _refused(self, exc):
        self.last_error = exc.reason
        if exc.reason in (REPLAY, TOO_OLD):
            self.counters.replayed += 1
        else:
            self.counters.bad_replies += 1
        return False

    def handle(self, packet, expected_seq=None):
        """Opens one host packet and runs its commands. Returns True only for
        an authentic, fresh ack naming `expected_seq`."""
        try:
            header, payload = mpseal.unseal(packet, self._keys_for(packet), direction=mpseal.TO_DEVICE, window=self.window)
        except mpseal.InvalidPacket as exc:
            return self._refused(exc)
        if header.type == mpseal.TYPE_ACK and len(payload) == 4:
            # Nearly every reply is a plain ack: its payload is only the acked
            # seq (u32, the layout of mpseal.control.encode_ack). Read here, it
            # keeps the command code out of the heap.
            acked = struct.unpack(">I", payload)[0]
            self.window.update(header.seq)
        else:
            import commands  # rare: loaded for this packet only (commands.py)

            try:
                acked = commands.handle(self, header, payload)
            except mpseal.InvalidPacket as exc:
                return self._refused(exc)
            finally:
                lazy.unload(commands.MODULES)
        if expected_seq is None or acked is None:
            return False
        if acked != expected_seq:
            self.counters.stale_acks += 1
            return False
        return True
