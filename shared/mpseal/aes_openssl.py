# CPython side of the crypto seam (see aes.py), the one aes.py picks on a
# host: AES from OpenSSL through `cryptography`. Never copied to a board.
#
# A host opens tens of thousands of packets a second for the same few keys.
# A new OpenSSL context per packet costs ~11 us; an update() on a context made
# once per key costs ~0.3 us. So prepare_key() keeps one ECB encryptor and one
# ECB decryptor per key (ECB carries no state between calls, so a context is
# reusable for ever) and CBC chaining is done here:
#   P_i = D(C_i) xor C_(i-1),  C_i = E(P_i xor C_(i-1)),  C_0 = IV.
# Decryption is one OpenSSL call over the whole ciphertext and one XOR.
# A prepared key is used by one thread at a time (the receiver's ingest runs
# on one writer thread; cryptography's contexts are not for concurrent use).
# aes_pycryptodome.py is the second CPython backend with the same functions;
# tests check the two against each other.
import hmac as _hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16
# C and constant time; re-exported by the seam. (An assignment, not `from hmac
# import`: the board API check resolves this module against MicroPython's
# stdlib stubs, whose hmac has no compare_digest.)
compare_digest = _hmac.compare_digest


def const(__value):
    # MicroPython folds `_NAME = const(n)` at compile time; on CPython it is
    # the plain value (see aes_pycryptodome.const).
    return __value


class _PreparedKey:
    __slots__ = ("encrypt", "decrypt")

    def __init__(self, key):
        cipher = Cipher(algorithms.AES(bytes(key)), modes.ECB())
        self.encrypt = cipher.encryptor().update
        self.decrypt = cipher.decryptor().update


def prepare_key(key):
    return _PreparedKey(key)


def ecb_encrypt_block(key, block):
    return key.encrypt(block)


def cbc_decrypt(key, iv, data):
    data = bytes(data)
    n = len(data)
    chain = int.from_bytes(iv, "big") << (8 * (n - _BLOCK)) | int.from_bytes(data[:-_BLOCK], "big") if n else 0
    return (int.from_bytes(key.decrypt(data), "big") ^ chain).to_bytes(n, "big")


def cbc_encrypt(key, iv, data):
    if len(data) == _BLOCK:  # the common case (an ack without commands): one block, no loop
        return key.encrypt((int.from_bytes(data, "big") ^ int.from_bytes(iv, "big")).to_bytes(_BLOCK, "big"))
    encrypt = key.encrypt
    previous = int.from_bytes(iv, "big")
    blocks = []
    for i in range(0, len(data), _BLOCK):
        block = encrypt((int.from_bytes(data[i : i + _BLOCK], "big") ^ previous).to_bytes(_BLOCK, "big"))
        previous = int.from_bytes(block, "big")
        blocks.append(block)
    return b"".join(blocks)
