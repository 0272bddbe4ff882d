# Everything the host sends back: acks, and commands riding on them (or
# arriving alone, e.g. by SMS). Replies are opened with the host->device keys
# (mpseal.unseal(..., direction=TO_DEVICE)), so a reading reflected back, a
# forged or a corrupt packet never counts as an ack.
#
# Replay rules (docs/design.md): a RAM replay window refuses any host sequence
# number seen since boot. /cmdseq.dat keeps the highest host sequence number a
# command was executed under, written BEFORE the commands run (so a reboot
# command cannot loop, and a command runs at most once); after a reboot a
# recorded old packet with commands is refused by that number. Plain acks are
# harmless to replay: they name a device sequence number that never repeats.
import mpseal
from mpseal import control
from mpseal.errors import REPLAY, TOO_OLD

import flashfs

EXECUTED_PATH = "/cmdseq.dat"


def _read_executed():
    raw = flashfs.read_atomic(EXECUTED_PATH)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0xFFFFFFFF  # unreadable: refuse commands rather than risk re-running them


class Downlink:
    def __init__(self, keys, epoch, counters, on_command):
        """on_command(opcode, argument bytes) -> True if understood."""
        self.keys = keys
        self.epoch = epoch
        self.previous = None  # (epoch, keys) before a rotate-key, until reboot
        self.counters = counters
        self.on_command = on_command
        self.window = mpseal.ReplayWindow()
        self.executed = _read_executed()
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

    def handle(self, packet, expected_seq=None):
        """Opens one host packet and runs its commands. Returns True only for
        an authentic, fresh ack naming `expected_seq`."""
        c = self.counters
        try:
            header, payload = mpseal.unseal(packet, self._keys_for(packet), direction=mpseal.TO_DEVICE, window=self.window)
            if header.type == mpseal.TYPE_ACK:
                acked, commands = control.decode_ack(payload)
            else:
                acked, commands = None, control.decode_commands(payload)
        except mpseal.InvalidPacket as exc:
            self.last_error = exc.reason
            if exc.reason in (REPLAY, TOO_OLD):
                c.replayed += 1
            else:
                c.bad_replies += 1
            return False
        self.window.update(header.seq)
        if commands:
            if header.seq <= self.executed:
                c.commands_refused += len(commands)
            else:
                self.executed = header.seq
                flashfs.write_atomic(EXECUTED_PATH, b"%d" % header.seq)
                for opcode, argument in commands:
                    try:
                        ok = self.on_command(opcode, argument)
                    except mpseal.InvalidPacket:  # a malformed argument
                        ok = False
                    if ok:
                        c.commands += 1
                    else:
                        c.commands_refused += 1
        if expected_seq is None or acked is None:
            return False
        if acked != expected_seq:
            c.stale_acks += 1
            return False
        return True
