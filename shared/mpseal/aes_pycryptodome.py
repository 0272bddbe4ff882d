# The second CPython backend of the crypto seam (aes.py picks aes_openssl.py;
# this one is kept as an independent implementation the tests compare it
# with). Never copied to a board.
#
# A host opens tens of thousands of packets a second for the same few keys.
# Building an AES object (key schedule) per packet was most of that cost, so
# prepare_key() keeps one ECB context per key (stateless, safe to reuse from
# any thread) and CBC chaining is done here:
#   P_i = D(C_i) xor C_(i-1),  C_i = E(P_i xor C_(i-1)),  C_0 = IV.
from hmac import compare_digest  # noqa: F401  (same seam functions as aes_openssl)

from Crypto.Cipher import AES

_BLOCK = 16


def _xor(a, b):
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def const(__value):
    # MicroPython folds `_NAME = const(n)` at compile time (the name then
    # costs no RAM on a board); on CPython it is the plain value. (The
    # leading "__" makes the parameter positional-only, as in micropython's
    # stub, in a syntax mpy-cross also accepts.)
    return __value


def prepare_key(key):
    return AES.new(bytes(key), AES.MODE_ECB)


def ecb_encrypt_block(key, block):
    return key.encrypt(block)


def cbc_decrypt(key, iv, data):
    data = bytes(data)
    return _xor(key.decrypt(data), bytes(iv) + data[:-_BLOCK])


def cbc_encrypt(key, iv, data):
    previous = bytes(iv)
    blocks = []
    for i in range(0, len(data), _BLOCK):
        previous = key.encrypt(_xor(data[i : i + _BLOCK], previous))
        blocks.append(previous)
    return b"".join(blocks)
