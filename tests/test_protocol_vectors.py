"""Known-answer vectors: the committed JSON files are what the code produces,
both runtimes reproduce them byte for byte, and an independent implementation
(pycryptodome HKDF/AES + CPython hmac) agrees with our hand-written HMAC/HKDF."""
import hashlib
import hmac
import json
import os

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

import mpseal
from mpseal.hkdf import hkdf
from mpseal.hmac import compare_digest, hmac_sha256
from mpseal.keys import LABELS, SALT
from mpseal_tools import vectors as vector_source

from conftest import REPO, VECTORS


def load(name):
    with open(os.path.join(VECTORS, name + ".json")) as f:
        return json.load(f)


def test_committed_vectors_are_what_the_code_generates():
    fresh = json.loads(json.dumps(vector_source.all_vectors()))
    for name, vectors in fresh.items():
        assert load(name) == vectors, "tests/vectors/%s.json is stale: run 'make vectors' and review the diff" % name


def test_vectors_on_micropython_from_source(micropython):
    result = micropython([os.path.join(REPO, "tests", "mp", "check_vectors.py"), VECTORS], heap=None)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.strip().endswith("73 passed, 0 failed")


def test_vectors_on_micropython_with_48k_heap(micropython, shared_mpy, tmp_path):
    # The checker itself as bytecode too (mpy-cross, like the package): compiling
    # it from source on a 48k heap would measure MicroPython's compiler, not mpseal.
    import subprocess

    from conftest import MICROPYTHON

    mpy_cross = os.path.join(os.path.dirname(MICROPYTHON), "mpy-cross")
    subprocess.run([mpy_cross, "-o", str(tmp_path / "check_vectors.mpy"), os.path.join(REPO, "tests", "mp", "check_vectors.py")],
                   check=True, timeout=60)
    # One vector file per run: the parsed JSON of all of them is test data a
    # board never holds (verify.json alone parses into 11 KB of objects).
    passed = 0
    for name in sorted(f[:-5] for f in os.listdir(VECTORS) if f.endswith(".json")):
        result = micropython(["-m", "check_vectors", VECTORS, name], heap="48k", env_path=str(tmp_path) + ":" + shared_mpy)
        out = result.stdout.decode()
        assert result.returncode == 0, name + ": " + out + result.stderr.decode()
        assert out.strip().endswith(" passed, 0 failed"), out
        passed += int(out.strip().split()[-4])
    assert passed == 73


def test_vectors_on_cpython():
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "shared"))
    result = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mp", "check_vectors.py"), VECTORS], env=env, capture_output=True)
    assert result.returncode == 0, result.stdout.decode()
    assert result.stdout.decode().strip().endswith("73 passed, 0 failed")


def test_hmac_matches_rfc4231_and_cpython():
    # RFC 4231 test case 2
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    long_key = bytes(range(131))  # longer than the block: hashed first
    assert hmac_sha256(long_key, b"x" * 300) == hmac.new(long_key, b"x" * 300, hashlib.sha256).digest()


def test_hkdf_matches_rfc5869_case1():
    okm = hkdf(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_derived_keys_match_pycryptodome_hkdf():
    for v in load("keys"):
        master = bytes.fromhex(v["master_key"])
        for name, label in (("device_to_host", LABELS[0]), ("host_to_device", LABELS[1])):
            okm = HKDF(master, 64, SALT, SHA256, context=label)
            want = v[name]
            assert okm[:16].hex() == want["enc_key"]
            assert okm[16:32].hex() == want["iv_key"]
            assert okm[32:].hex() == want["mac_key"]


def test_generated_packets_decrypt_with_an_independent_implementation():
    for v in load("generate"):
        if v["version"] != mpseal.VERSION_STANDARD or v["type"] != mpseal.TYPE_READING:
            continue
        packet = bytes.fromhex(v["packet"])
        okm = HKDF(bytes.fromhex(v["master_key"]), 64, SALT, SHA256, context=LABELS[0])
        enc_key, mac_key = okm[:16], okm[32:]
        assert hmac.compare_digest(hmac.new(mac_key, packet[:-16], hashlib.sha256).digest()[:16], packet[-16:])
        plain = AES.new(enc_key, AES.MODE_CBC, packet[11:27]).decrypt(packet[27:-16])
        assert plain[: -plain[-1]].hex() == v["payload"]


def test_compare_digest():
    assert compare_digest(b"abc", b"abc")
    assert not compare_digest(b"abc", b"abd")
    assert not compare_digest(b"abc", b"ab")


def test_reasons_raised_in_board_code_are_the_catalogued_ones():
    # Board code raises InvalidPacket("literal") so a board never loads the
    # catalog (mpseal/errors.py); the two must name the same reasons.
    import re

    from mpseal import errors

    catalog = {v for k, v in vars(errors).items() if k.isupper()}
    raised = set()
    for folder in ("shared/mpseal", "firmware"):
        for name in os.listdir(os.path.join(REPO, folder)):
            if name.endswith(".py"):
                source = open(os.path.join(REPO, folder, name)).read()
                raised |= set(re.findall(r'InvalidPacket\("([a-z_]+)"', source))
                raised |= {r for group in re.findall(r"exc\.reason in \(([^)]*)\)", source) for r in re.findall(r'"([a-z_]+)"', group)}
    assert raised and raised <= catalog, sorted(raised - catalog)
