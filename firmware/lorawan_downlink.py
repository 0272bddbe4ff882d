# Opening a LoRaWAN 1.0.x data downlink (the layout is in lorawan.py). A
# board receives a downlink a few times a day at most, so this is loaded by
# transport_lorawan only when a receive window caught a frame, and unloaded
# right after (lazy.py): its code takes no heap between downlinks.
import struct

from lorawan import crypt, mic
from mpseal.hmac import compare_digest

_DOWN_TYPES = (0x60, 0xA0)  # unconfirmed / confirmed data down


def open_frame(session, frame, last):
    """Opens a data downlink: (FCnt, FPort or None, FRMPayload, FOpts), or
    None for anything not for us or not authentic (wrong type or DevAddr,
    bad MIC, FCnt not above `last`, the highest accepted, -1 for none).
    The 16 bits on air are widened to 32 from `last`, as a 1.0.x device does."""
    addr, nwk, app = session
    if len(frame) < 12 or frame[0] not in _DOWN_TYPES:
        return None
    to, fctrl, low = struct.unpack("<IBH", frame[1:8])
    if to != addr:
        return None
    fcnt = (max(last, 0) & ~0xFFFF) | low
    if fcnt <= last:
        fcnt += 0x10000
    if not compare_digest(mic(nwk, 1, addr, fcnt, frame[:-4]), frame[-4:]):
        return None
    end = 8 + (fctrl & 0x0F)
    fopts = frame[8:end]
    if len(frame) - 4 <= end:
        return fcnt, None, b"", fopts
    fport = frame[end]
    return fcnt, fport, crypt(nwk if fport == 0 else app, 1, addr, fcnt, frame[end + 1 : -4]), fopts
