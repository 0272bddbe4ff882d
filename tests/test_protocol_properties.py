"""Property tests: no modification of a packet is ever accepted; the replay
window behaves like the obvious (unbounded) model restricted to 64 entries."""
import hashlib
import hmac

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mpseal
from mpseal import errors, payload
from mpseal.replay_window import WINDOW_SIZE

KEY = bytes(range(32))
KEYS = mpseal.DeviceKeys(KEY)
VERSIONS = st.sampled_from([mpseal.VERSION_STANDARD, mpseal.VERSION_COMPACT])


@st.composite
def packets(draw):
    version = draw(VERSIONS)
    data = draw(st.binary(max_size=64))
    seq = draw(st.integers(min_value=1, max_value=2**32 - 1))
    device = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return mpseal.seal(KEYS, device, seq, data, version=version), data


@settings(max_examples=300, deadline=None)
@given(packets(), st.data())
def test_any_bit_flip_is_rejected(sealed, data):
    packet, _ = sealed
    bit = data.draw(st.integers(min_value=0, max_value=len(packet) * 8 - 1))
    tampered = bytearray(packet)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(mpseal.InvalidPacket):
        mpseal.unseal(bytes(tampered), KEYS)


@settings(max_examples=200, deadline=None)
@given(packets(), st.data())
def test_any_truncation_is_rejected(sealed, data):
    packet, _ = sealed
    cut = data.draw(st.integers(min_value=0, max_value=len(packet) - 1))
    with pytest.raises(mpseal.InvalidPacket):
        mpseal.unseal(packet[:cut], KEYS)


@settings(max_examples=200, deadline=None)
@given(packets(), st.binary(min_size=1, max_size=48))
def test_any_extension_is_rejected(sealed, extra):
    packet, _ = sealed
    with pytest.raises(mpseal.InvalidPacket):
        mpseal.unseal(packet + extra, KEYS)


@settings(max_examples=100, deadline=None)
@given(packets())
def test_round_trip(sealed):
    packet, data = sealed
    assert mpseal.unseal(packet, KEYS)[1] == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=120))
def test_replay_window_matches_model(seqs):
    window = mpseal.ReplayWindow()
    seen = set()
    highest = 0
    for seq in seqs:
        if highest - seq >= WINDOW_SIZE:
            expected = errors.TOO_OLD
        elif seq == 0 or seq in seen:  # 0 is never valid: it starts out "seen"
            expected = errors.REPLAY
        else:
            expected = None
        try:
            window.accept(seq)
            got = None
        except mpseal.InvalidPacket as exc:
            got = exc.reason
        assert got == expected, (seq, sorted(seen), highest)
        if got is None:
            seen.add(seq)
            highest = max(highest, seq)
        # state survives a round trip through bytes (as the host persists it)
        window = mpseal.ReplayWindow.from_bytes(window.to_bytes())


def test_late_packet_inside_window_accepted_once():
    window = mpseal.ReplayWindow()
    for seq in (1, 2, 5, 70):
        window.accept(seq)
    window.accept(10)  # late but inside 70-63..70
    for seq, reason in ((10, errors.REPLAY), (70, errors.REPLAY), (6, errors.TOO_OLD), (0, errors.TOO_OLD)):
        with pytest.raises(mpseal.InvalidPacket) as info:
            window.check(seq)
        assert info.value.reason == reason


def test_window_checked_only_after_the_tag():
    # A forged packet with a replayed sequence number says bad_tag, not replay:
    # an attacker learns nothing about which sequence numbers were accepted.
    packet = bytearray(mpseal.seal(KEYS, 1, 5, b"x"))
    window = mpseal.ReplayWindow()
    window.update(5)
    packet[-1] ^= 1
    with pytest.raises(mpseal.InvalidPacket) as info:
        mpseal.unseal(bytes(packet), KEYS, window=window)
    assert info.value.reason == errors.BAD_TAG


def test_seal_refuses_caller_mistakes():
    for kwargs in ({"seq": 0}, {"seq": 2**32}, {"epoch": 256}, {"version": 7}, {"type": 9}):
        args = dict(key=KEYS, device_id=1, seq=1, payload=b"")
        args.update(kwargs)
        with pytest.raises(ValueError):
            mpseal.seal(**args)
    with pytest.raises(ValueError):
        mpseal.DeviceKeys(b"short")
    with pytest.raises(ValueError):
        mpseal.seal(KEYS, 1, 1, bytes(600))


def test_payload_codec_rejects_garbage():
    for bad in (b"", b"\x09", b"\x02\x00", b"\x02\x00\x31\x00", b"\x02\x85ab", b"\x01\xff\xfe", b"\x02\x00\xf0\x00"):
        with pytest.raises(mpseal.InvalidPacket) as info:
            payload.decode(bad)
        assert info.value.reason == errors.BAD_PAYLOAD


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.integers(min_value=1, max_value=8), st.data())
def test_host_cbc_chaining_matches_pycryptodome_cbc(key, iv, blocks, data):
    # The CPython seam chains CBC by hand over a reused ECB context (speed);
    # it must be exactly AES-CBC.
    from Crypto.Cipher import AES

    from mpseal import aes

    plain = data.draw(st.binary(min_size=16 * blocks, max_size=16 * blocks))
    prepared = aes.prepare_key(key)
    reference = AES.new(key, AES.MODE_CBC, iv).encrypt(plain)
    assert aes.cbc_encrypt(prepared, iv, plain) == reference
    assert aes.cbc_decrypt(prepared, iv, reference) == plain
    assert aes.ecb_encrypt_block(prepared, plain[:16]) == AES.new(key, AES.MODE_ECB).encrypt(plain[:16])


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.integers(min_value=1, max_value=32), st.data())
def test_both_cpython_crypto_backends_agree(key, iv, blocks, data):
    # The seam picks aes_openssl (cryptography/OpenSSL) on CPython; the
    # pycryptodome backend is an independent implementation of the same
    # functions. Same bytes out of both, for every size a packet can have
    # (a ciphertext is at least one block: parse_header refuses less).
    from mpseal import aes, aes_openssl, aes_pycryptodome

    assert aes.prepare_key is aes_openssl.prepare_key, "the seam picks OpenSSL on CPython"
    plain = data.draw(st.binary(min_size=16 * blocks, max_size=16 * blocks))
    ossl, pycd = aes_openssl.prepare_key(key), aes_pycryptodome.prepare_key(key)
    sealed = aes_openssl.cbc_encrypt(ossl, iv, plain)
    assert sealed == aes_pycryptodome.cbc_encrypt(pycd, iv, plain)
    assert aes_openssl.cbc_decrypt(ossl, iv, sealed) == aes_pycryptodome.cbc_decrypt(pycd, iv, sealed) == plain
    # decrypting what is not our ciphertext agrees too (a forged body that passed no tag)
    other = data.draw(st.binary(min_size=16 * blocks, max_size=16 * blocks))
    assert aes_openssl.cbc_decrypt(ossl, iv, other) == aes_pycryptodome.cbc_decrypt(pycd, iv, other)
    assert aes_openssl.ecb_encrypt_block(ossl, plain[:16]) == aes_pycryptodome.ecb_encrypt_block(pycd, plain[:16])
    flipped = bytearray(iv)
    flipped[data.draw(st.integers(0, 15))] ^= 1 << data.draw(st.integers(0, 7))
    for a, b in ((iv, iv), (iv, bytes(flipped)), (iv, iv[:-1])):
        assert aes_openssl.compare_digest(a, b) == aes_pycryptodome.compare_digest(a, b) == (a == b)


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=30).map(lambda b: bytes((payload.FORMAT_VALUES,)) + b),
    st.dictionaries(st.text("abcxyz", min_size=1, max_size=5), st.floats(-1000, 1000, allow_nan=False), max_size=4).map(payload.encode_values),
))
@example(payload.encode_values([("temperature", 1.0), ("temperature", 2.0)]))  # a name given twice
@example(b"\x02\x09\x00\x01\x83ch9\x00\x02")  # channel 9 by number, then its fallback name "ch9"
@example(payload.encode_values([("temperature", 1.0), (0, 2.0)]))  # a channel by name and by number
def test_validate_accepts_exactly_what_decode_accepts(data):
    # The host stores a payload after validate() and decodes it only when read:
    # validate must never pass what decode refuses, nor refuse what it takes.
    try:
        expected = payload.decode(data)[0]
    except mpseal.InvalidPacket as exc:
        with pytest.raises(mpseal.InvalidPacket) as info:
            payload.validate(data)
        assert info.value.reason == exc.reason
        return
    assert payload.validate(data) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=100), st.lists(st.binary(max_size=80), max_size=4))
def test_the_receivers_copied_hmac_is_the_boards_hmac(key, parts):
    # mpseal_host.host_keys: HMAC-SHA256 from copied pad states on the host,
    # recomputed pads on the board: the same tags for any key and message.
    from mpseal.hmac import HmacSha256
    from mpseal_host.host_keys import CopiedHmacSha256

    mac = CopiedHmacSha256(key)
    assert mac.digest(*parts) == HmacSha256(key).digest(*parts) == hmac.new(key, b"".join(parts), hashlib.sha256).digest()
    assert mac.digest(*parts) == mac.digest(*parts)  # the precomputed states are copied, never consumed


def test_host_keys_seal_and_open_as_device_keys_do():
    from mpseal_host.host_keys import host_keys

    master = bytes(range(32))
    board, host = mpseal.DeviceKeys(master), host_keys(master)
    packet = mpseal.seal(board, 5, 9, b"\x02\x00\x12\x08\x59", iv=bytes(16))
    assert mpseal.seal(host, 5, 9, b"\x02\x00\x12\x08\x59", iv=bytes(16)) == packet
    assert mpseal.unseal(packet, host)[1] == mpseal.unseal(packet, board)[1]
