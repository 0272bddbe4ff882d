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
print("ok")
