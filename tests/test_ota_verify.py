"""firmware/ecdsa_p256.py (release signature check on the board) against
signatures made by `cryptography`: random keys and messages, edge keys
(private key 1 and n-1: Q = G and Q = -G), and invalid ones (each with the
reason it must fail), on CPython and on MicroPython in a 48k heap."""
import json
import os
import random
import sys

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import REPO, SHARED

FIRMWARE = os.path.join(REPO, "firmware")
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
RANDOM_VECTORS = 120


def _pub(private):
    return private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _sign(private, message):
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _flip(data, bit):
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def make_vectors(seed=17):
    rng = random.Random(seed)
    vectors = []

    def add(desc, key, sig, msg, valid):
        vectors.append({"desc": desc, "key": key.hex(), "sig": sig.hex(), "msg": msg.hex(), "valid": valid})

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(8)]
    keys += [ec.derive_private_key(1, ec.SECP256R1()), ec.derive_private_key(N - 1, ec.SECP256R1())]
    for i in range(RANDOM_VECTORS):
        private = keys[i % len(keys)]
        msg = rng.randbytes(rng.choice((0, 1, 32, 55, 64, 200, 1000)))
        sig = _sign(private, msg)
        pub = _pub(private)
        add("valid %d" % i, pub, sig, msg, True)
        if i % 3 == 0:
            add("flipped bit in the signature", pub, _flip(sig, rng.randrange(512)), msg, False)
        elif i % 3 == 1:
            add("changed message", pub, sig, msg + b"\0" if i % 2 else _flip(msg or b"\0", 0), False)
        else:
            add("another key", _pub(keys[(i + 1) % len(keys)]), sig, msg, False)
        if i % 10 == 0:
            r, s = sig[:32], sig[32:]
            # (r, n - s) is the same signature's twin: ECDSA accepts both
            add("valid: s replaced by n - s", pub, r + (N - int.from_bytes(s, "big")).to_bytes(32, "big"), msg, True)
            add("r = 0", pub, bytes(32) + s, msg, False)
            add("s = 0", pub, r + bytes(32), msg, False)
            add("r = n", pub, N.to_bytes(32, "big") + s, msg, False)
            add("s = n", pub, r + N.to_bytes(32, "big"), msg, False)
            add("r + n (same value mod n, out of range)", pub, (int.from_bytes(r, "big") + N).to_bytes(33, "big")[-32:] + s, msg,
                False)
            add("truncated signature", pub, sig[:63], msg, False)
            add("signature with a byte appended", pub, sig + b"\0", msg, False)
            add("DER instead of r|s", pub, private.sign(msg, ec.ECDSA(hashes.SHA256()))[:64], msg, False)
    pub = _pub(keys[0])
    sig = _sign(keys[0], b"m")
    add("key: y changed (off the curve)", pub[:-1] + bytes([pub[-1] ^ 1]), sig, b"m", False)
    add("key: x = p (outside the field)", b"\x04" + P.to_bytes(32, "big") + pub[33:], sig, b"m", False)
    add("key: compressed form is not accepted", b"\x02" + pub[1:33], sig, b"m", False)
    add("key: all zeros", bytes(65), sig, b"m", False)
    return vectors


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    data = make_vectors()
    path = tmp_path_factory.mktemp("ecdsa") / "vectors.json"
    path.write_text("".join(json.dumps(v) + "\n" for v in data))
    return str(path), data


@pytest.fixture(scope="module")
def verifier():
    sys.path.insert(0, FIRMWARE)
    try:
        import ecdsa_p256
    finally:
        sys.path.remove(FIRMWARE)
    return ecdsa_p256


def test_vectors_have_both_outcomes(vectors):
    data = vectors[1]
    assert sum(v["valid"] for v in data) > RANDOM_VECTORS and sum(not v["valid"] for v in data) > RANDOM_VECTORS


def test_cpython_matches_cryptography(vectors, verifier):
    for v in vectors[1]:
        try:
            key = verifier.public_key(bytes.fromhex(v["key"]))
        except ValueError:
            assert not v["valid"] and v["desc"].startswith("key:"), v["desc"]
            continue
        assert not v["desc"].startswith("key:"), v["desc"]
        assert verifier.verify(key, bytes.fromhex(v["sig"]), bytes.fromhex(v["msg"])) == v["valid"], v["desc"]


def test_micropython_48k_matches_cryptography(vectors, micropython, tmp_path):
    # compiled like the board gets it (mpy-cross -march=xtensa): compiling the
    # source on the board needs more heap than running it
    from mpseal_tools.build import compile_module, mpy_cross_executable

    compile_module(os.path.join(FIRMWARE, "ecdsa_p256.py"), str(tmp_path / "ecdsa_p256.mpy"), "ecdsa_p256.py",
                   mpy_cross_executable())
    result = micropython([os.path.join(REPO, "tests", "mp", "ota_verify.py"), vectors[0]],
                         env_path="%s:%s" % (tmp_path, SHARED), timeout=300)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    assert "ok %d vectors" % len(vectors[1]) in out, out


def test_public_key_forms(verifier):
    private = ec.generate_private_key(ec.SECP256R1())
    pub = _pub(private)
    assert verifier.public_key(pub) == verifier.public_key(pub[1:])
    with pytest.raises(ValueError):
        verifier.public_key(pub[:40])
