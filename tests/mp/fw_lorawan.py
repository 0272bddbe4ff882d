# lorawan.py (frames, airtime, duty cycle), mpseal.cmac, and sx1276.py driven
# against hw_unix_sx1276's simulated register file: there is no radio on this
# machine, so the chip is a model of its LoRa-mode registers (what it does not
# model is listed in hw_unix_sx1276.py).
import binascii
import struct

import hw_lora
import lorawan
import lorawan_downlink
import region_eu868
import sx1276
from fw_check import raises
from mpseal.cmac import cmac

h = binascii.unhexlify

# RFC 4493 section 4, AES-CMAC examples 1-4
K = h("2b7e151628aed2a6abf7158809cf4f3c")
M = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
for n, want in ((0, "bb1d6929e95937287fa37d129b756746"), (16, "070a16b46b4d4144f79bdd9dd04a287c"), (40, "dfa66747de9ae63030ca32611497c827"), (64, "51f0bebf7e3b9d92fc49741779363cfe")):
    assert cmac(K, M[:n]) == h(want), (n, binascii.hexlify(cmac(K, M[:n])))
print("ok RFC 4493 vectors")

# lora-packet's README example (an independent implementation's known frame)
NWK = h("44024241ed4ce9a68c6a8bc055233fd3")
APP = h("ec925802ae430ca77fd3dd73cb2cc588")
session = (0x49BE7DF1, NWK, APP)
frame = lorawan.uplink(session, 2, 1, b"test")
assert frame == h("40F17DBE4900020001954378762B11FF0D"), binascii.hexlify(frame)
print("ok uplink frame matches lora-packet's example byte for byte")

# downlinks: FCnt widened from 16 bits, replay refused, MIC checked, other DevAddr ignored
def down(fcnt, fport, payload, addr=0x49BE7DF1):
    msg = struct.pack("<BIBHB", 0x60, addr, 0, fcnt & 0xFFFF, fport) + lorawan.crypt(APP, 1, addr, fcnt, payload)
    return msg + lorawan.mic(NWK, 1, addr, fcnt, msg)

got = lorawan_downlink.open_frame(session, down(7, 1, b"ack!"), -1)
assert got == (7, 1, b"ack!", b""), got
assert lorawan_downlink.open_frame(session, down(7, 1, b"ack!"), 7) is None  # replayed FCnt
assert lorawan_downlink.open_frame(session, down(0x10003, 1, b"x"), 0xFFFE) == (0x10003, 1, b"x", b"")  # 16-bit rollover
bad = bytearray(down(8, 1, b"ack!"))
bad[-1] ^= 1
assert lorawan_downlink.open_frame(session, bytes(bad), 7) is None
assert lorawan_downlink.open_frame(session, down(8, 1, b"a", addr=0x01020304), 7) is None
assert lorawan_downlink.open_frame(session, frame, -1) is None  # an uplink is no downlink
print("ok downlinks: rollover, replay, MIC, DevAddr")

# airtime (Semtech formula; SX1276 datasheet 4.1.1.7): a 48-byte frame (35-byte packet + 13)
assert lorawan.airtime_us(7, 125, 48) == 97536
assert lorawan.airtime_us(12, 125, 48) == 2301952  # low data rate optimisation on
assert lorawan.airtime_us(7, 250, 48) == 48768
print("ok airtime")

# duty cycle: 1 % per sub-band, ticks passed in
import time

d = lorawan.DutyCycle((100, 100, 10), time.ticks_diff)
assert d.ready(0, 1000)
d.used(0, 1000, 98)
assert not d.ready(0, 1000 + 9799) and d.ready(0, 1000 + 9800) and d.ready(1, 1001)
r = region_eu868
for _ in range(20):
    assert r.CHANNEL_BAND[lorawan.pick(r, d, 2000)] == 1  # band 0 is silent: only band 1's channels
d.used(1, 2000, 98)
assert lorawan.pick(r, d, 2001) is None
assert lorawan.pick(r, d, 2000 + 9800) is not None
print("ok duty cycle per sub-band")

# the driver against the simulated register file
spi, nss, dio0, reset = hw_lora.bus(15)
chip = spi.chip
radio = sx1276.SX1276(spi, nss, None, reset)
assert chip.regs[0x01] == 0x81, hex(chip.regs[0x01])  # LoRa mode (set while asleep), standby
radio.configure(868100000, 7, 125, 14)
assert bytes(chip.regs[0x06:0x09]) == b"\xd9\x06\x66", binascii.hexlify(bytes(chip.regs[0x06:0x09]))
assert chip.regs[0x1D] == 0x72 and chip.regs[0x1E] == 0x74 and chip.regs[0x26] == 0x04  # BW125 CR4/5 explicit; SF7 CRC; AGC
assert chip.regs[0x09] == 0xFC and chip.regs[0x39] == 0x34  # PA_BOOST 14 dBm; public sync word
assert chip.channel() == (868099976, 7, 7, 2, 0x34)  # 61 Hz register steps
air_header = bytearray(9)  # the air header the chip puts in front of a frame: the same plus the TX power
chip.channel(air_header)
assert struct.unpack(">IBBBBb", air_header) == (868099976, 7, 7, 2, 0x34, 14)
radio.configure(869525000, 12, 125, 14)
assert chip.regs[0x26] == 0x0C  # SF12/125: low data rate optimisation
radio.transmit(frame, 100)
assert chip.transmitted == 1 and bytes(chip.fifo[: len(frame)]) == frame and chip.regs[0x22] == len(frame)
assert chip.regs[0x12] == 0  # TxDone seen and cleared
assert radio.receive(8, 50) is None and chip.regs[0x33] & 0x40  # nothing in the air: RxTimeout; I/Q inverted
air = struct.pack(">IBBBBb", 869525000, 12, 7, 3, 0x34, 14)
chip.pending = [struct.pack(">IBBBBb", 869525000, 9, 7, 3, 0x34, 14) + b"other SF", air + b"downlink"]
assert radio.receive(8, 50) == b"downlink" and radio.rssi == -60 and radio.snr == 9
chip.pending = [struct.pack(">IBBBBb", 869525000, 12, 7, 2, 0x34, 14) + b"not inverted"]
assert radio.receive(8, 50) is None
radio.transmit(b"x" * 20, 100)
assert chip.regs[0x33] & 0x40 == 0  # uplinks: normal I/Q
print("ok SX1276 driver against the simulated register file")

# DIO0 wired: the pin is polled instead of RegIrqFlags
radio = sx1276.SX1276(spi, nss, dio0)
radio.configure(868300000, 9, 125, 10)
radio.transmit(b"abc", 100)
chip.channel(air_header)
assert chip.transmitted == 3 and struct.unpack(">IBBBBb", air_header)[5] == 10
chip.regs[0x42] = 0  # a bus with no chip on it reads 0
assert "no SX1276" in raises(sx1276.RadioError, sx1276.SX1276, spi, nss)
print("ok")
