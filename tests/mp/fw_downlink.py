# downlink.py: acks and commands are verified with the host->device keys; a
# command runs only from a fresh ack naming the awaited reading (or a fresh
# command packet), at most once, also after a reboot; junk is skipped and
# counted; a resync answer counts only for the nonce in flight.
import struct

import mpseal
from mpseal import control

import commands
import counters
import downlink

KEYS = mpseal.DeviceKeys(bytes(range(32)))
OTHER = mpseal.DeviceKeys(bytes(32))
ran = []


def on_command(opcode, argument, seq):
    if opcode == 99 or (opcode == control.CMD_SET_INTERVAL and len(argument) != 4):
        return False  # as commands.apply refuses unknown or malformed ones
    ran.append(opcode)
    return True


def ack(host_seq, acked, commands=(), keys=KEYS):
    return mpseal.seal(keys, 7, host_seq, control.encode_ack(acked, commands), type=mpseal.TYPE_ACK)


def expect(d, packet, awaiting, result):
    d.awaiting = awaiting
    got = d.handle(packet)
    if awaiting is None or isinstance(awaiting, int):
        d.awaiting = None
    assert got is result, (got, result)
    if d.commands:  # as App.poll does, once the exchange is over
        commands.handle(d)


c = counters.Counters()
d = downlink.Downlink(KEYS, 0, c, on_command)
expect(d, ack(1, 100), 100, True)
expect(d, ack(2, 100), 101, False)
assert c.stale_acks == 1
print("ok an ack counts only for the reading it names")

cmd = ack(3, 101, [control.set_interval(30), control.read_now()])
expect(d, cmd, 101, True)
assert ran == [2, 1] and c.commands == 2 and d.executed == 3 and d.commands is None
for _ in range(100):  # the host re-sends the same ack bytes for a retransmission; an attacker replays them
    expect(d, cmd, 101, True)
assert ran == [2, 1] and c.replayed == 100
print("ok the same ack again still acks and runs nothing")

late = ack(4, 90, [control.reboot()])  # authentic, fresh, but for another reading
expect(d, late, 102, False)
assert ran == [2, 1] and c.stale_acks == 2
print("ok commands on an ack for another reading never run")

forged = bytearray(ack(5, 102, [control.reboot()]))
forged[-1] ^= 1
expect(d, bytes(forged), 102, False)
expect(d, ack(6, 102, [control.reboot()], keys=OTHER), 102, False)
reading = mpseal.seal(KEYS, 7, 6, b"\x02")  # a reading reflected back at the board
expect(d, reading, 6, False)
expect(d, b"junk", 102, False)
expect(d, None, 102, False)  # a datagram from another address
assert ran == [2, 1] and c.bad_replies == 5  # the foreign one counted with them
expect(d, ack(7, 102), 102, True)  # ... and the real ack behind them still counts
print("ok forged, reflected, junk and foreign datagrams skipped and counted")

c2 = counters.Counters()
d2 = downlink.Downlink(KEYS, 0, c2, on_command)  # after a reboot: empty RAM window
d2.executed = 3  # /cmdseq.dat
expect(d2, cmd, 101, True)  # the ack itself still acknowledges
assert ran == [2, 1] and c2.commands_refused == 2
print("ok recorded command refused after a reboot")

expect(d2, ack(9, 103, [(99, b""), control.read_now()]), 103, True)
assert c2.commands_refused == 3 and ran == [2, 1, 1]
expect(d2, ack(10, 104, [(control.CMD_SET_INTERVAL, b"\x01")]), 104, True)
assert c2.commands_refused == 4
expect(d2, ack(11, 105) + b"", 105, True)
truncated = mpseal.seal(KEYS, 7, 12, control.encode_ack(106) + b"\x02\x04\x00", type=mpseal.TYPE_ACK)
expect(d2, truncated, 106, True)  # the reading is acked; the broken list runs nothing
assert c2.bad_replies == 1 and ran == [2, 1, 1]
print("ok unknown, malformed or truncated commands refused and counted, the rest run")

packet = mpseal.seal(KEYS, 7, 20, control.encode_commands([control.read_now()]), type=mpseal.TYPE_COMMAND)
expect(d2, packet, None, False)
expect(d2, packet, None, False)
assert ran == [2, 1, 1, 1] and c2.replayed == 1
print("ok a command packet runs once")

nonce = b"N" * 16
answer = mpseal.seal(KEYS, 7, 0, control.encode_resync(nonce, 1200, 20), type=control.TYPE_RESYNC)
expect(d2, answer, None, False)  # nobody asked: refused
assert c2.replayed == 2
expect(d2, answer, b"M" * 16, False)  # an answer to another request (replayed)
assert d2.awaiting == b"M" * 16
expect(d2, answer, 1200, False)  # waiting for an ack, not an answer
expect(d2, answer, nonce, True)
assert d2.awaiting == (1200, 20)
expect(d2, answer, (1200, 20), False)  # once
print("ok a resync answer counts once, for its own nonce only")
