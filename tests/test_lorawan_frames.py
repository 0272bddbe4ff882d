"""LoRaWAN frames of the board's lorawan.py (run here on CPython, through the
crypto seam's pycryptodome side) against two independent implementations:
`cryptography`'s AES-CMAC and npm lora-packet. No radio, no TTN: frames only.
(The same module runs under MicroPython in tests/mp/fw_lorawan.py.)"""
import os

from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import algorithms
from hypothesis import given, settings, strategies as st

from lorawan_helpers import board_module, oracle  # noqa: F401 (fixture)
from mpseal.cmac import cmac

lorawan = board_module("lorawan")
lorawan_downlink = board_module("lorawan_downlink")

NWK = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
APP = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
DEV_ADDR = 0x260B1234


def reference_cmac(key, message):
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return c.finalize()


def test_rfc4493_vectors_on_cpython():
    k = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    m = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
    assert cmac(k, m[:0]).hex() == "bb1d6929e95937287fa37d129b756746"
    assert cmac(k, m[:16]).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    assert cmac(k, m[:40]).hex() == "dfa66747de9ae63030ca32611497c827"
    assert cmac(k, m).hex() == "51f0bebf7e3b9d92fc49741779363cfe"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=80))
def test_cmac_matches_cryptography(key, message):
    assert cmac(key, message) == reference_cmac(key, message)


def test_uplinks_decode_with_lora_packet_including_fcnt_above_65535(oracle):  # noqa: F811
    session = (DEV_ADDR, NWK, APP)
    for fcnt in (1, 2, 65535, 65536, 65537, 0x12345678, 0xFFFFFFFF):
        payload = os.urandom(35)
        phy = lorawan.uplink(session, fcnt, 1, payload)
        got = oracle.decode(phy, NWK, APP, fcnt)
        assert got == {"mtype": "Unconfirmed Data Up", "dev_addr": "%08x" % DEV_ADDR, "fcnt16": fcnt & 0xFFFF, "fport": 1, "mic_ok": True, "payload": payload.hex()}, fcnt
    # the upper 16 bits matter: a frame of FCnt 65537 does not verify as FCnt 1
    phy = lorawan.uplink(session, 65537, 1, b"x" * 35)
    assert oracle.decode(phy, NWK, APP, 1)["mic_ok"] is False


def test_downlinks_built_by_lora_packet_open_on_the_board_side(oracle):  # noqa: F811
    session = (DEV_ADDR, NWK, APP)
    for fcnt, last in ((0, -1), (5, 4), (65536, 65535), (65540, 65530), (0x20001, 0x1FFFF)):
        payload = os.urandom(40)
        phy = oracle.encode_down(DEV_ADDR, fcnt, 1, payload, NWK, APP)
        assert lorawan_downlink.open_frame(session, phy, last) == (fcnt, 1, payload, b""), (fcnt, last)
        assert lorawan_downlink.open_frame(session, phy, fcnt) is None  # the same frame again: replay
    tampered = bytearray(oracle.encode_down(DEV_ADDR, 9, 1, b"abc", NWK, APP))
    tampered[9] ^= 0x01
    assert lorawan_downlink.open_frame(session, bytes(tampered), 8) is None
