# downlink.py: acks and commands are verified with the host->device keys; a
# replayed or forged command is ignored and counted, also after a reboot.
import mpseal
from mpseal import control

import counters
import downlink

KEYS = mpseal.DeviceKeys(bytes(range(32)))
OTHER = mpseal.DeviceKeys(bytes(32))
ran = []


def on_command(opcode, argument):
    if opcode == control.CMD_SET_INTERVAL:
        control.interval_of(argument)  # as app.py does: raises on a bad argument
    ran.append(opcode)
    return opcode != 99


def ack(host_seq, acked, commands=(), keys=KEYS):
    return mpseal.seal(keys, 7, host_seq, control.encode_ack(acked, commands), type=mpseal.TYPE_ACK)


c = counters.Counters()
d = downlink.Downlink(KEYS, 0, c, on_command)
assert d.handle(ack(1, 100), 100) is True
assert d.handle(ack(2, 100), 101) is False and c.stale_acks == 1
print("ok an ack counts only for the reading it names")

cmd = ack(3, 101, [control.set_interval(30), control.read_now()])
assert d.handle(cmd, 101) is True and ran == [2, 1] and c.commands == 2
assert d.handle(cmd, 101) is False and ran == [2, 1] and c.replayed == 1
print("ok replayed command packet ignored and counted")

forged = bytearray(ack(4, 102, [control.reboot()]))
forged[-1] ^= 1
assert d.handle(bytes(forged), 102) is False and c.bad_replies == 1
assert d.handle(ack(5, 102, [control.reboot()], keys=OTHER), 102) is False and c.bad_replies == 2
reading = mpseal.seal(KEYS, 7, 6, b"\x02")  # a reading reflected back at the board
assert d.handle(reading, 6) is False and c.bad_replies == 3
assert ran == [2, 1]
print("ok forged and reflected packets ignored and counted")

c2 = counters.Counters()
d2 = downlink.Downlink(KEYS, 0, c2, on_command)  # after a reboot: empty RAM window
assert d2.handle(cmd, 101) is True  # the ack itself is harmless
assert ran == [2, 1] and c2.commands_refused == 2
print("ok recorded command refused after a reboot")

assert d2.handle(ack(9, 103, [(99, b"")]), 103) is True and c2.commands_refused == 3
assert d2.handle(ack(10, 104, [(control.CMD_SET_INTERVAL, b"\x01")]), 104) is True and c2.commands_refused == 4
print("ok unknown or malformed command counted as refused")
