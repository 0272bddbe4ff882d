# Everything the host sends back: acks, commands riding on them (or arriving
# alone, e.g. by SMS) and resync answers. Replies are opened with the
# host->device keys (mpseal.unseal(..., direction=TO_DEVICE)), so a reading
# reflected back, a forged or a corrupt packet never counts.
#
# Rules (docs/protocol.md section 5):
# - An authentic ack naming the reading the board waits for acknowledges it,
#   even when its host seq was seen before: the host answers a
#   retransmission with the same ack bytes.
# - Commands run only from an ack naming the awaited reading (or a command
#   packet) whose host seq is fresh in the RAM window AND above /cmdseq.dat,
#   the highest host seq commands were executed under (`executed`;
#   commands.py). So a replayed ack or command packet never runs anything
#   twice, also after a reboot, and an ack for another reading never runs
#   its commands.
# - A resync answer counts only if it carries the nonce of the request in
#   flight (recovery.py).
# - A cumulative ack (type 6, LoRaWAN) acts once: only with a host seq fresh
#   in the RAM window (handle returns its payload, the transport releases
#   the frames it names stored); its commands follow the rules above.
#
# `awaiting` is what the board waits for: a device seq (int: its ack), a
# nonce (bytes: the resync answer, which then replaces it with the tuple
# (highest device seq, host seq)), or None. One attribute for the three:
# each name costs board RAM for good (docs/firmware.md "Memory and size").
import struct

import mpseal


class Downlink:
    def __init__(self, keys, epoch, counters, on_command):
        """on_command(opcode, argument bytes, host seq) -> True if understood."""
        self.keys = keys
        self.epoch = epoch
        # (epoch, keys) before a rotate-key, until reboot (commands.py): the
        # host seals acks under the epoch of the packet they acknowledge, so
        # queued packets sealed under the old key still get old-key acks.
        self.previous = None
        self.counters = counters
        self.on_command = on_command
        self.window = mpseal.ReplayWindow()
        # Highest host seq commands ran under (/cmdseq.dat, read by the app
        # at boot); None while unknown (unreadable file, until a resync).
        self.executed = 0
        self.awaiting = None
        # (host seq, payload, offset of the first command): commands from a
        # packet that passed the rules above, run by the app once the reply
        # is garbage (App.poll -> commands.handle), not with the heap at its
        # fullest mid-exchange.
        self.commands = None

    def handle(self, packet):
        """Opens one host packet and acts on it. True only for what the board
        is waiting for (`awaiting`). Transports with a `handle` attribute
        call it for each datagram while they wait (transport_udp), so junk in
        front of the ack is skipped; None stands for a datagram from another
        address (counted with the bad replies)."""
        c = self.counters
        keys = self.keys
        old = self.previous
        if old is not None and packet and len(packet) > 2 and packet[2] == old[0]:  # byte 2: the epoch
            keys = old[1]
        try:
            if packet is None:
                raise mpseal.InvalidPacket("bad_type")
            header, payload = mpseal.unseal(packet, keys, direction=mpseal.TO_DEVICE)
            awaiting = self.awaiting
            if header.type == 5:  # resync: nonce (16) | highest device seq u32 | host seq u32 (mpseal.control)
                if isinstance(awaiting, bytes) and len(payload) == 24 and payload[:16] == awaiting:
                    self.awaiting = (struct.unpack(">I", payload[16:20])[0], struct.unpack(">I", payload[20:])[0])
                    return True
                c.replayed += 1  # an old answer, or one to nobody: never trusted
                return False
            try:
                self.window.check(header.seq)
                fresh = True
            except mpseal.InvalidPacket:
                fresh = False
            start = 0
            if header.type == mpseal.TYPE_ACK:
                if len(payload) < 4:
                    raise mpseal.InvalidPacket("bad_payload")
                if struct.unpack(">I", payload[:4])[0] != awaiting:
                    c.stale_acks += 1  # a late reply to an earlier retry: its commands never run
                    return False
                start = 4
            elif header.type == 6:  # cumulative ack (LoRaWAN): highest u32 | bitmap u64 | command* (mpseal.control)
                if len(payload) < 12:
                    raise mpseal.InvalidPacket("bad_payload")
                start = 12
            if not fresh:
                c.replayed += 1  # seen before: an ack still acknowledges, nothing runs
                return start == 4
            self.window.update(header.seq)
            if len(payload) > start:
                self.commands = (header.seq, payload, start)
            # A fresh cumulative ack: its payload, for the transport that
            # keeps the frames it names (transport_lorawan -> lorawan_acks).
            return payload if start == 12 else start == 4
        except mpseal.InvalidPacket:  # forged, corrupt, foreign, or a malformed command payload
            c.bad_replies += 1
        return False
