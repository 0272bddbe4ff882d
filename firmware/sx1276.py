# A small register-level driver for the Semtech SX1276 (HopeRF RFM95W) in
# LoRa mode, written from the SX1276/77/78/79 datasheet (rev. 7, section 4.1
# "LoRa modem" and 6.4 "LoRa mode register map"): explicit header, CRC on,
# SF/BW/CR, TX power on PA_BOOST, one transmission, one RX single window.
# Interrupts are polled over SPI (RegIrqFlags) unless DIO0 is wired; then the
# pin is polled instead, which leaves the SPI bus quiet while waiting.
# It talks only to an SPI object and a chip-select pin from the hardware seam
# (hw_lora.bus), so the unix port runs it against a simulated register file
# (hw_unix_sx1276.py); nothing here knows which it got.
import time
from micropython import const

_FIFO = const(0x00)
_OP_MODE = const(0x01)
_FRF_MSB = const(0x06)  # carrier = Frf * 32 MHz / 2^19, three bytes MSB first
_PA_CONFIG = const(0x09)
_LNA = const(0x0C)
_FIFO_ADDR_PTR = const(0x0D)
_FIFO_TX_BASE = const(0x0E)
_FIFO_RX_BASE = const(0x0F)
_FIFO_RX_CURRENT = const(0x10)
_IRQ_FLAGS = const(0x12)
_RX_NB_BYTES = const(0x13)
_PKT_SNR = const(0x19)
_PKT_RSSI = const(0x1A)
_MODEM_CONFIG1 = const(0x1D)  # BW 7:4 | CR 3:1 | implicit header 0
_MODEM_CONFIG2 = const(0x1E)  # SF 7:4 | TxContinuous 3 | RxPayloadCrcOn 2 | SymbTimeout 9:8
_SYMB_TIMEOUT_LSB = const(0x1F)
_PREAMBLE_MSB = const(0x20)
_PAYLOAD_LENGTH = const(0x22)
_MODEM_CONFIG3 = const(0x26)  # LowDataRateOptimize 3 | AgcAutoOn 2
_INVERT_IQ = const(0x33)  # bit 6: invert I/Q on RX (LoRaWAN downlinks); 0x27 = the reset value
_SYNC_WORD = const(0x39)
_INVERT_IQ2 = const(0x3B)  # 0x19 with inverted I/Q, 0x1D without (errata)
_DIO_MAPPING1 = const(0x40)  # DIO0 7:6: 00 RxDone, 01 TxDone
_VERSION = const(0x42)
_PA_DAC = const(0x4D)  # 0x87 enables +20 dBm on PA_BOOST, 0x84 is the default

_LONG_RANGE = const(0x80)  # LoRa mode; may only change in SLEEP
_SLEEP = const(0)
_STDBY = const(1)
_TX = const(3)
_RX_SINGLE = const(6)
_IRQ_RX_TIMEOUT = const(0x80)
_IRQ_RX_DONE = const(0x40)
_IRQ_CRC_ERROR = const(0x20)
_IRQ_TX_DONE = const(0x08)
_CHIP_VERSION = const(0x12)
# RegModemConfig1 bandwidth codes (datasheet table): 125 kHz = 7, 250 = 8, 500 = 9
_BANDWIDTHS = (125, 250, 500)


class RadioError(OSError):
    pass


class SX1276:
    def __init__(self, spi, nss, dio0=None, reset=None):
        self.spi = spi
        self.nss = nss
        self.dio0 = dio0
        self.one = bytearray(1)
        self.two = bytearray(2)  # a register write: no allocation per write (the heap is tight at 48k)
        self.rssi = self.snr = 0
        if reset is not None:  # NRESET low for > 100 us, then 5 ms until the chip is ready (datasheet 7.2)
            reset.value(0)
            time.sleep_ms(1)
            reset.value(1)
            time.sleep_ms(6)
        if self.read(_VERSION) != _CHIP_VERSION:
            raise RadioError("no SX1276 answers on the SPI bus (check wiring and the NSS pin)")
        self.write(_OP_MODE, _SLEEP)  # LongRangeMode can only be set while asleep
        self.write(_OP_MODE, _LONG_RANGE | _SLEEP)
        self.write(_OP_MODE, _LONG_RANGE | _STDBY)
        self.write(_FIFO_TX_BASE, 0)
        self.write(_FIFO_RX_BASE, 0)
        self.write(_LNA, self.read(_LNA) | 0x03)  # LNA boost for the HF port

    # --- SPI: first byte = address, bit 7 set for a write; then data, the address auto-increments (except the FIFO) ---
    def transfer(self, address, data=None, n=1):
        buf = self.one
        self.nss.value(0)
        try:
            buf[0] = address | (0x80 if data is not None else 0)
            self.spi.write(buf)
            if data is not None:
                self.spi.write(data)
                return None
            out = bytearray(n)
            self.spi.readinto(out)
            return out
        finally:
            self.nss.value(1)

    def read(self, address):
        return self.transfer(address)[0]

    def write(self, address, value):
        buf = self.two
        buf[0] = address | 0x80
        buf[1] = value
        self.nss.value(0)
        try:
            self.spi.write(buf)
        finally:
            self.nss.value(1)

    def mode(self, mode):
        self.write(_OP_MODE, _LONG_RANGE | mode)

    def configure(self, frequency, sf, bw, power=14, sync=0x34, preamble=8, cr=1):
        """Channel and modulation for the next transmit()/receive():
        frequency in Hz, SF 7..12, bandwidth `bw` 125/250/500 (kHz), coding rate
        4/(4+cr), TX power 2..20 dBm on PA_BOOST (the RFM95's only PA)."""
        if not 7 <= sf <= 12 or bw not in _BANDWIDTHS or not 2 <= power <= 20:
            raise ValueError("radio: SF 7..12, bandwidth 125/250/500 kHz, power 2..20 dBm")
        self.mode(_STDBY)
        # Frf = f * 2^19 / 32 MHz = f * 256 / 15625, split so no step needs a long integer
        q, r = divmod(frequency, 15625)
        self.transfer(_FRF_MSB, (q * 256 + r * 256 // 15625).to_bytes(3, "big"))
        self.write(_MODEM_CONFIG1, (_BANDWIDTHS.index(bw) + 7) << 4 | cr << 1)  # explicit header
        self.write(_MODEM_CONFIG2, sf << 4 | 0x04)  # CRC on
        # Low data rate optimisation is mandated when a symbol lasts > 16 ms (SF11/SF12 at 125 kHz)
        self.write(_MODEM_CONFIG3, 0x04 | (0x08 if (1 << sf) * 1000 // bw > 16000 else 0))
        self.transfer(_PREAMBLE_MSB, preamble.to_bytes(2, "big"))
        self.write(_SYNC_WORD, sync)
        # PA_BOOST: Pout = 17 - (15 - OutputPower) dBm; 18..20 dBm also need RegPaDac
        self.write(_PA_DAC, 0x87 if power > 17 else 0x84)
        self.write(_PA_CONFIG, 0x80 | 0x70 | (min(power, 17) - 2))

    def wait(self, flags, timeout_ms, idle=None):
        """Polls until one of the IRQ `flags` is set; returns the flags (and clears them), 0 on timeout."""
        start = time.ticks_ms()
        while True:
            if self.dio0 is None or self.dio0.value():
                irq = self.read(_IRQ_FLAGS)
                if irq & flags:
                    self.write(_IRQ_FLAGS, 0xFF)  # write 1s to clear
                    return irq
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                self.mode(_STDBY)
                return 0
            if idle:
                idle()
            time.sleep_ms(1)

    def transmit(self, data, timeout_ms, idle=None):
        """Sends one frame (normal I/Q, as LoRaWAN uplinks are); raises RadioError when TxDone never comes."""
        self.mode(_STDBY)
        self.write(_INVERT_IQ, 0x27)
        self.write(_INVERT_IQ2, 0x1D)
        self.write(_FIFO_ADDR_PTR, 0)
        self.transfer(_FIFO, data)
        self.write(_PAYLOAD_LENGTH, len(data))
        self.write(_IRQ_FLAGS, 0xFF)
        self.write(_DIO_MAPPING1, 0x40)  # DIO0 = TxDone
        self.mode(_TX)
        if not self.wait(_IRQ_TX_DONE, timeout_ms, idle):
            raise RadioError("radio: no TxDone")

    def receive(self, symbols, timeout_ms, idle=None):
        """One RX single window with inverted I/Q (LoRaWAN downlinks): the
        frame's bytes, or None when no preamble came within `symbols` symbols
        or its CRC failed. Sets .rssi (dBm) and .snr (dB) of a received frame."""
        self.mode(_STDBY)
        self.write(_INVERT_IQ, 0x67)
        self.write(_INVERT_IQ2, 0x19)
        config2 = self.read(_MODEM_CONFIG2)
        self.write(_MODEM_CONFIG2, (config2 & 0xFC) | (symbols >> 8 & 0x03))
        self.write(_SYMB_TIMEOUT_LSB, symbols & 0xFF)
        self.write(_IRQ_FLAGS, 0xFF)
        self.write(_DIO_MAPPING1, 0x00)  # DIO0 = RxDone
        self.mode(_RX_SINGLE)
        irq = self.wait(_IRQ_RX_DONE | _IRQ_RX_TIMEOUT, timeout_ms, idle)
        if not irq & _IRQ_RX_DONE or irq & _IRQ_CRC_ERROR:
            return None
        self.write(_FIFO_ADDR_PTR, self.read(_FIFO_RX_CURRENT))
        data = self.transfer(_FIFO, None, self.read(_RX_NB_BYTES))
        snr = self.read(_PKT_SNR)
        self.snr = (snr - 256 if snr > 127 else snr) // 4  # signed, in 0.25 dB
        self.rssi = self.read(_PKT_RSSI) - 157  # HF port (datasheet 5.5.5)
        return data  # the bytearray transfer() filled: no second copy of the frame

    def sleep(self):
        self.mode(_SLEEP)
