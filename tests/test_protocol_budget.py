"""The byte budget of docs/protocol.md: a temperature/humidity/battery reading
fits one SMS (<=160 base64 characters) and, in the compact profile, one
LoRaWAN EU868 DR0 frame (<=51 bytes)."""
import base64

import mpseal
from mpseal import payload

READING = {"temperature": -12.34, "humidity": 99.9, "battery": 4.2}
KEY = bytes(32)


def test_three_value_reading_is_one_aes_block():
    assert len(payload.encode_values(READING)) == 13


def test_standard_packet_fits_one_sms():
    packet = mpseal.seal(KEY, 0xFFFFFFFF, 0xFFFFFFFF, payload.encode_values(READING))
    assert len(packet) == 59
    text = base64.b64encode(packet)
    assert len(text) == 80 <= 160


def test_compact_packet_fits_lorawan_dr0():
    packet = mpseal.seal(KEY, 1, 1, payload.encode_values(READING), version=mpseal.VERSION_COMPACT)
    assert len(packet) == 35 <= 51
    # and the largest compact payload that still fits DR0: 31 bytes -> 2 blocks
    assert len(mpseal.seal(KEY, 1, 2, bytes(31), version=mpseal.VERSION_COMPACT)) == 51


def test_largest_payload_for_one_sms_is_63_bytes():
    assert len(base64.b64encode(mpseal.seal(KEY, 1, 1, bytes(63)))) == 144
    assert len(base64.b64encode(mpseal.seal(KEY, 1, 1, bytes(64)))) > 160
