# transport_lorawan.py with the simulated SX1276 (hw_unix_sx1276; no radio
# here, no gateway either: frames go nowhere). Config checks, FCnt = the
# packet's sequence number, the byte budget per DR, duty cycle per sub-band.
import struct

import transport_lorawan
from fw_check import raises

KEYS = {"dev_addr": "260b0007", "nwk_s_key": "2b7e151628aed2a6abf7158809cf4f3c", "app_s_key": "000102030405060708090a0b0c0d0e0f"}


class Config:
    power = "always-on"
    interval_s = 0
    queue_max = 100

    def __init__(self, **lorawan):
        section = dict(KEYS)
        section.update(lorawan)
        self.data = {"lorawan": section}


def make(config):
    t = transport_lorawan.Transport(config)
    t.idle = lambda: None
    t.listen = lambda *args: None  # the receive windows are tested end to end (tests/test_lorawan_e2e.py)
    return t


def packet(seq, size=35):
    return struct.pack(">BBBII", 2, 1, 0, 7, seq) + b"\0" * (size - 11)


msg = raises(ValueError, transport_lorawan.Transport, Config(nwk_s_key="00" * 15 + "zz"))
assert "lorawan.nwk_s_key" in msg and "zz" not in msg, msg  # names the key, never shows it
assert "lorawan.data_rate" in raises(ValueError, transport_lorawan.Transport, Config(data_rate=7))
assert "lorawan.tx_power" in raises(ValueError, transport_lorawan.Transport, Config(tx_power=20))  # EU868: 16 dBm EIRP
assert "lorawan.region" in raises(ValueError, transport_lorawan.Transport, Config(region="us915"))
c = Config()
c.data = {}
assert "'lorawan'" in raises(ValueError, transport_lorawan.Transport, c)
print("ok config errors name the key, never a key's value")

t = make(Config(data_rate=5))
chip = t.radio.spi.chip
assert t.send(packet(70000)) == b"" and t.sent
frame = bytes(chip.fifo[: chip.regs[0x22]])
assert frame[6:8] == struct.pack("<H", 70000 & 0xFFFF)  # FCnt = sequence number (low 16 bits on air)
assert t.send(packet(70001)) == b"" and t.sent  # the other sub-band
assert t.send(packet(70002)) is None and not t.sent and t.rejected is None  # both sub-bands silent for ~10 s: queue it
assert chip.transmitted == 2
print("ok FCnt is the sequence number; 1 % duty cycle per sub-band")

t = make(Config(data_rate=0))
assert t.send(packet(5, 52)) is None and t.rejected == "too_big_for_dr" and not t.sent  # DR0 carries 51
assert t.send(packet(6, 51)) == b"" and t.sent
print("ok byte budget per data rate")

c = Config(data_rate=0)
c.power = "interval"
c.interval_s = 120  # SF12: a 48-byte frame needs 230 s off
t = make(c)
assert t.send(packet(9)) is None and t.rejected == "duty_cycle" and not t.sent
c.interval_s = 300
t = make(c)
assert t.send(packet(10)) == b"" and t.sent
print("ok interval mode sends only when the sleep is a long enough off-time")


class Seqs:  # the app's SequenceStore, as far as a resend uses it
    def __init__(self, n):
        self.n = n

    def next(self):
        self.n += 1
        return self.n - 1


def cumulative(highest, stored):
    bits = 0
    for seq in stored:
        bits |= 1 << (highest - seq)
    return struct.pack(">I", highest) + bits.to_bytes(8, "big")


import lorawan_acks  # noqa: E402  (what transport_lorawan loads per ack)


def unacked():
    return lorawan_acks.kept()


t = make(Config(data_rate=5))
t.duty.used = lambda *a: None  # no duty-cycle waits in this unit test (tested above)
t.seqs = Seqs(200)
assert unacked() == [6, 10, 70000, 70001], unacked()  # the frames sent above, kept in flash across a new Transport (a reboot)
import os  # noqa: E402

for name in os.listdir("/unacked"):
    os.remove("/unacked/" + name)
for seq in (100, 101, 102, 103, 120, 130):
    assert t.send(packet(seq)) == b""
assert unacked() == [100, 101, 102, 103, 120, 130]  # on air, kept in flash until a cumulative ack
# the host stored 101, 103 and 120 (its highest); 100 and 102 never arrived; 130 came after the ack was made
lorawan_acks.take(t, cumulative(120, (120, 103, 101)))
assert unacked() == [100, 102, 130] and t.missing == [100, 102], (unacked(), t.missing)
chip = t.radio.spi.chip
sent = chip.transmitted
t.poll()  # one resend per call: the oldest gap, the same sealed bytes under a fresh FCnt
frame = bytes(chip.fifo[: chip.regs[0x22]])
assert frame[6:8] == struct.pack("<H", 200) and t.missing == [102] and t.seqs.n == 201
t.poll()
assert not t.missing and t.seqs.n == 202 and chip.transmitted == sent + 2
t.poll()  # nothing left to resend
assert chip.transmitted == sent + 2 and unacked() == [100, 102, 130]  # resent, still kept until acked
lorawan_acks.take(t, cumulative(140, (140, 130, 102, 100)))
assert unacked() == [] and t.missing is None
assert t.send(packet(150)) == b""
# 150 is 100 below the host's highest: its window refuses it (too_old), so it is dropped, counted
lorawan_acks.take(t, cumulative(250, (250,)))
assert unacked() == [] and t.missing is None
# a frame is kept until 64 newer ones went out (the host's window could not take it any more)
for seq in range(300, 366):
    assert t.send(packet(seq)) == b""
assert unacked() == list(range(302, 366))
print("ok cumulative acks release what is stored, resend gaps under fresh FCnts, drop what is too old")
print("ok")
