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

import lazy


class Downlink:
    def __init__(self, keys, epoch, counters, on_command):
        """on_command(opcode, argument bytes) -> True if understood."""
        self.keys = keys
        self.epoch = epoch
        # (epoch, keys) before a rotate-key, until reboot (commands.py): the
        # host seals acks under the epoch of the packet they acknowledge, so
        # queued packets sealed under the old key still get old-key acks.
        self.previous = None
        self.counters = counters
        self.on_command = on_command
        self.window = mpseal.ReplayWindow()
        self.executed = None  # highest host seq a command ran under: read from flash by the first command (commands.py)

    def handle(self, packet, seq=None):
        """Opens one host packet and runs its commands. Returns True only for
        an authentic, fresh ack naming `seq` (the reading it answers)."""
        keys = self.keys
        old = self.previous
        if old is not None and len(packet) > 2 and packet[2] == old[0]:  # byte 2: the epoch
            keys = old[1]
        try:
            header, payload = mpseal.unseal(packet, keys, direction=mpseal.TO_DEVICE, window=self.window)
            if header.type == mpseal.TYPE_ACK and len(payload) == 4:
                # Nearly every reply is a plain ack: its payload is only the
                # acked seq (u32, the layout of mpseal.control.encode_ack).
                # Read here, it keeps the command code out of the heap.
                acked = struct.unpack(">I", payload)[0]
                self.window.update(header.seq)
            else:
                import commands  # rare: loaded for this packet only (commands.py)

                try:
                    acked = commands.handle(self, header, payload)
                finally:
                    lazy.unload(commands.MODULES)
        except mpseal.InvalidPacket as exc:  # forged, corrupt, replayed, or a malformed command payload
            if exc.reason in ("replay", "too_old"):  # names from mpseal/errors.py, which a board never loads
                self.counters.replayed += 1
            else:
                self.counters.bad_replies += 1
            return False
        if seq is None or acked is None:
            return False
        if acked != seq:
            self.counters.stale_acks += 1
            return False
        return True
