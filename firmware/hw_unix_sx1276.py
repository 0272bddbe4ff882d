# Unix-port stand-in for an SX1276 on SPI (hw_unix.lora_bus): there is no
# radio here, so this is a register file that behaves like the chip's LoRa
# mode as far as sx1276.py uses it, with "the air" as UDP datagrams to a
# gateway simulator (mpseal_tools sim, address in MPSEAL_LORA_AIR=host:port).
#
# Modelled: SPI framing (address byte, bit 7 = write, auto-increment except
# at RegFifo), RegOpMode (LongRangeMode only changes in SLEEP; the FIFO is not
# accessible in SLEEP), RegVersion 0x12, the FIFO with its address pointer and
# TX/RX base addresses, RegIrqFlags (write 1 to clear), DIO0 per
# RegDioMapping1. TX sends the FIFO bytes with the frequency, SF, bandwidth,
# I/Q, CRC/header bits, sync word and power read back from the registers, so
# a wrong register is a frame the gateway refuses or never hears. RX single
# takes a datagram only if it was sent on the channel, SF and bandwidth the
# registers select, with inverted I/Q.
# NOT modelled: timing (TxDone is set at once; a downlink the gateway sent
# before the window opened is waiting in the socket, as if it arrived in the
# window), RF power/noise (fixed RSSI -60 dBm, SNR 9 dB), FSK mode, CAD,
# frequency hopping, implicit header, the chip's reset pulse.
import os
import select
import socket
import struct
from micropython import const

_HEADER = const(9)  # struct.calcsize(">IBBBBb"), the air header below
_MAX_DATAGRAM = const(9 + 255)  # the air header and the largest LoRa frame: a bigger buffer would only cost the heap
# The air header, ">IBBBBb": frequency Hz, SF, bandwidth code, flags (1 inverted I/Q, 2 CRC,
# 4 implicit header), sync word, power dBm.
# Lean on purpose: this stand-in sits in the board's heap, which a real SX1276 does not (its FIFO
# and registers are on the chip), and the LoRa board has little to spare at 48k: one buffer for
# allocation per datagram out, the socket opened at the first TX, no copies of the FIFO.


class Chip:
    def __init__(self):
        self.regs = bytearray(0x80)
        self.regs[0x01] = 0x09  # RegOpMode after reset: FSK, STDBY
        self.regs[0x42] = 0x12
        self.regs[0x0C] = 0x20
        self.fifo = bytearray(256)
        self.sock = self.air = None  # opened at the first TX (or RX)
        self.pending = []
        self.transmitted = 0

    def lora(self):
        return self.regs[0x01] & 0x80

    def read(self, address):
        if address == 0:
            return self.fifo_next(None)
        return self.regs[address]

    def fifo_next(self, value):
        if self.regs[0x01] & 0x07 == 0:  # SLEEP: the FIFO is not accessible
            return 0
        ptr = self.regs[0x0D]
        self.regs[0x0D] = (ptr + 1) & 0xFF
        if value is None:
            return self.fifo[ptr]
        self.fifo[ptr] = value
        return 0

    def write(self, address, value):
        r = self.regs
        if address == 0:
            self.fifo_next(value)
        elif address == 0x01:
            if r[0x01] & 0x07 != 0:  # LongRangeMode is read-only outside SLEEP
                value = (value & 0x7F) | (r[0x01] & 0x80)
            r[0x01] = value
            if self.lora() and value & 0x07 == 3:
                self.tx()
            elif self.lora() and value & 0x07 == 6:
                self.rx()
        elif address == 0x12:
            r[0x12] &= ~value & 0xFF
        elif address != 0x42:
            r[address] = value

    def channel(self, into=None):
        """(frequency Hz, SF, bandwidth code, flags, sync word, power dBm) the
        registers select; packed as the air header into `into` when given."""
        r = self.regs
        frf = r[0x06] << 16 | r[0x07] << 8 | r[0x08]
        hz = (frf * 15625 + 128) // 256
        flags = (1 if r[0x33] & 0x40 else 0) | (2 if r[0x1E] & 0x04 else 0) | (r[0x1D] & 0x01) << 2
        pa = r[0x09]
        power = (17 - (15 - (pa & 0x0F))) if pa & 0x80 else -1  # PA_BOOST only (RFM95)
        if power == 17 and r[0x4D] & 0x07 == 0x07:
            power = 20
        if into is not None:
            struct.pack_into(">IBBBBb", into, 0, hz, r[0x1E] >> 4, r[0x1D] >> 4, flags, r[0x39], power)
        return hz, r[0x1E] >> 4, r[0x1D] >> 4, flags, r[0x39]

    def open(self):
        air = os.getenv("MPSEAL_LORA_AIR")
        if self.sock is None and air:
            host, port = air.rsplit(":", 1)
            self.air = socket.getaddrinfo(host, int(port))[0][-1]
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        return self.sock

    def tx(self):
        r = self.regs
        if self.open() is not None:
            self.drain()
            self.pending = []  # what was in the air before this frame is gone
            n = r[0x22]
            out = bytearray(_HEADER + n)  # the one datagram buffer (the FIFO stays the only copy of the frame until here)
            self.channel(out)
            base = r[0x0E]
            out[_HEADER:] = memoryview(self.fifo)[base : base + n]
            self.sock.sendto(out, self.air)
        self.transmitted += 1
        r[0x12] |= 0x08  # TxDone
        r[0x01] = (r[0x01] & 0xF8) | 1  # back to STDBY, as the chip does

    def drain(self):
        poller = select.poll()  # made per drain, not kept: a kept one costs heap between frames
        poller.register(self.sock, select.POLLIN)
        while poller.poll(0):
            self.pending.append(self.sock.recv(_MAX_DATAGRAM))
        self.pending = self.pending[-8:]

    def rx(self):
        r = self.regs
        if self.open() is not None:
            self.drain()
        want = self.channel()
        for i in range(len(self.pending)):
            got = struct.unpack_from(">IBBBBb", self.pending[i])
            # same channel (within two 61 Hz register steps), SF, bandwidth, inverted I/Q (flag 1) and sync word
            if abs(got[0] - want[0]) < 100 and got[1:3] == want[1:3] and got[3] & 1 and want[3] & 1 and got[4] == want[4]:
                data = memoryview(self.pending.pop(i))[_HEADER:]
                base = r[0x0F]
                self.fifo[base : base + len(data)] = data
                r[0x10] = base
                r[0x13] = len(data)
                r[0x19] = 36  # SNR 9 dB, in 0.25 dB
                r[0x1A] = 97  # RSSI -60 dBm (-157 + value)
                r[0x12] |= 0x50  # RxDone | ValidHeader
                r[0x01] = (r[0x01] & 0xF8) | 1
                return
        r[0x12] |= 0x80  # RxTimeout
        r[0x01] = (r[0x01] & 0xF8) | 1

    def dio0(self):
        mapping = self.regs[0x40] >> 6
        return 1 if self.regs[0x12] & (0x08 if mapping == 1 else 0x40 if mapping == 0 else 0) else 0


class SPI:
    """machine.SPI's write/readinto, framed by the chip-select pin below."""

    def __init__(self, chip):
        self.chip = chip
        self.address = None

    def select(self, low):
        self.address = None if low else -1

    def transfer(self, data, out):
        chip = self.chip
        for i in range(len(data)):
            if self.address is None:
                self.write_op = data[i] & 0x80
                self.address = data[i] & 0x7F
                value = 0
            elif self.address < 0:
                value = 0  # NSS high: the chip ignores the bus
            else:
                if self.write_op:
                    chip.write(self.address, data[i])
                    value = 0
                else:
                    value = chip.read(self.address)
                if self.address:
                    self.address = (self.address + 1) & 0x7F
            if out is not None:
                out[i] = value

    def write(self, data):
        self.transfer(data, None)

    def readinto(self, buf, write=0):
        self.transfer(buf, buf)  # what goes out while reading is ignored (the chip does the same)


class Pin:
    """NSS (frames SPI transactions), DIO0 (follows the chip's IRQ), or a no-op (reset)."""

    def __init__(self, spi=None, chip=None):
        self.spi = spi
        self.chip = chip
        self.state = 1

    def value(self, value=None):
        if value is None:
            return self.chip.dio0() if self.chip else self.state
        self.state = value
        if self.spi:
            self.spi.select(not value)


def bus():
    """(spi, nss, dio0, reset) for sx1276.SX1276, all on one simulated chip."""
    chip = Chip()
    spi = SPI(chip)
    spi.select(False)
    return spi, Pin(spi=spi), Pin(chip=chip), Pin()
