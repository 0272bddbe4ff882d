# LoRaWAN 1.0.x, the parts an ABP Class A device needs, free of I/O (the
# radio is sx1276.py, the schedule transport_lorawan.py): building uplink
# PHYPayloads, opening downlinks, airtime (Semtech formula) and duty cycle.
#
#   PHYPayload = MHDR (1) | DevAddr (4, LE) | FCtrl (1) | FCnt (2, LE) | FOpts (0..15)
#                | FPort (1) | FRMPayload (encrypted) | MIC (4)
#   FRMPayload: xor with S = AES(K, A_1) | AES(K, A_2) | ..., K = AppSKey
#               (NwkSKey on FPort 0)
#   MIC = AES-CMAC(NwkSKey, B0 | MHDR .. FRMPayload)[0:4]
#   A_i = 01 | 00 00 00 00 | Dir | DevAddr | FCnt (4, LE) | 00 | i
#   B0  = 49 | 00 00 00 00 | Dir | DevAddr | FCnt (4, LE) | 00 | len(message)
# Dir is 0 up, 1 down. FCnt is 32 bits; only its low 16 go on air, so the
# receiver (TTN) must never see it go backwards: transport_lorawan uses the
# mpseal sequence number, which never does (seqstore.py). Opening downlinks is in
# lorawan_downlink.py, loaded only when a frame arrives.
import os
import struct

from mpseal.aes import ecb_encrypt_block, prepare_key
from mpseal.cmac import cmac

UNCONFIRMED_UP = 0x40  # MType 010, LoRaWAN R1


def _block(first, dir, addr, fcnt, last, into=None, at=0):
    if into is None:
        return struct.pack("<BIBIIBB", first, 0, dir, addr, fcnt, 0, last)
    struct.pack_into("<BIBIIBB", into, at, first, 0, dir, addr, fcnt, 0, last)


def crypt(key, dir, addr, fcnt, data):
    """FRMPayload encryption, which is also its decryption (xor with S).
    All the A_i blocks go through one ECB call: one AES object (cryptolib:
    ~320 bytes each) and one keystream buffer per frame, not one per 16
    bytes, so a frame needs no more heap than that at 48k."""
    n = len(data)
    s = bytearray((n + 15) & ~15)
    for i in range(0, n, 16):
        _block(1, dir, addr, fcnt, i // 16 + 1, s, i)
    s = ecb_encrypt_block(prepare_key(key), s)
    out = bytearray(data)
    for i in range(n):
        out[i] ^= s[i]
    return out


def mic(nwk_key, dir, addr, fcnt, message):
    return cmac(nwk_key, _block(0x49, dir, addr, fcnt, len(message)) + message)[:4]


def uplink(session, fcnt, fport, payload):
    """The PHYPayload of an unconfirmed data uplink: `session` is (DevAddr
    u32, NwkSKey, AppSKey), `fcnt` the full 32-bit counter, FCtrl 0 (no ADR:
    the data rate comes from config)."""
    addr, nwk, app = session
    message = struct.pack("<BIBHB", UNCONFIRMED_UP, addr, 0, fcnt & 0xFFFF, fport) + crypt(nwk if fport == 0 else app, 0, addr, fcnt, payload)
    return message + mic(nwk, 0, addr, fcnt, message)


def airtime_us(sf, bw, size, preamble=8, cr=1, crc=1):
    """Time on air of a LoRa frame of `size` bytes, explicit header (Semtech
    SX1276 datasheet 4.1.1.7 / AN1200.13): preamble (n + 4.25 symbols) plus
    8 + max(ceil((8PL - 4SF + 28 + 16CRC) / (4(SF - 2DE))) (CR + 4), 0)
    payload symbols; DE (low data rate optimisation) when a symbol > 16 ms.
    `bw` in kHz."""
    symbol = (1 << sf) * 1000 // bw
    de = 1 if symbol > 16000 else 0
    blocks = -(-(8 * size - 4 * sf + 28 + 16 * crc) // (4 * (sf - 2 * de)))
    return (preamble * 4 + 17) * symbol // 4 + (8 + max(blocks, 0) * (cr + 4)) * symbol


class DutyCycle:
    """Per sub-band: after a frame that started at `now` with airtime T, the
    band is silent until now + T / duty (ETSI's off-time rule, as in
    Semtech's LoRaMac-node). Times are time.ticks_ms() values, passed in."""

    def __init__(self, bands, ticks_diff):
        self.bands = bands
        self.diff = ticks_diff
        self.last = [None] * len(bands)  # (start ticks, off ms) of the band's last frame

    def ready(self, band, now):
        last = self.last[band]
        if last is None:
            return True
        since = self.diff(now, last[0])
        return since < 0 or since >= last[1]  # < 0: a ticks wrap, i.e. long ago

    def used(self, band, now, airtime_ms):
        self.last[band] = (now, airtime_ms * self.bands[band])


def pick(region, duty, now):
    """A random channel (LoRaWAN requires pseudo-random hopping) among those
    whose sub-band may transmit now: its index in region.CHANNELS, or None."""
    bands = region.CHANNEL_BAND
    free = [i for i in range(len(bands)) if duty.ready(bands[i], now)]
    if not free:
        return None
    return free[os.urandom(1)[0] % len(free)]
