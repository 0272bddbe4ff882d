# The crypto seam: the only place that knows which AES implementation exists,
# plus the random source. MicroPython (ESP8266 and unix port) has `cryptolib`;
# CPython uses OpenSSL (`cryptography`) through a separate module,
# aes_openssl.py, so board code never names it. It also holds the other
# runtime differences: const() and compare_digest() (a Python loop on the
# board, the C hmac.compare_digest on CPython).
# Both sides offer the same functions; `key` is whatever prepare_key(raw 16
# bytes) returned, so each side can keep what makes it fast or small.
import os

try:
    from cryptolib import aes as _aes
    from micropython import const

    _MODE_ECB = const(1)  # const(): folded at compile time, no name on the board
    _MODE_CBC = const(2)

    def prepare_key(key):
        # cryptolib objects carry CBC state and serve one direction only, so a
        # fresh one is made per call from the raw key: nothing to prepare.
        return key

    def cbc_encrypt(key, iv, data):
        return _aes(key, _MODE_CBC, iv).encrypt(data)

    def cbc_decrypt(key, iv, data):
        return _aes(key, _MODE_CBC, iv).decrypt(data)

    def ecb_encrypt_block(key, block):
        return _aes(key, _MODE_ECB).encrypt(block)

    def compare_digest(a, b):
        """Constant-time equality: the loop never exits early on a mismatch, so
        the time taken says nothing about how many leading bytes of a tag were
        right. Lengths are public (they are fixed by the protocol version)."""
        if len(a) != len(b):
            return False
        diff = 0
        for i in range(len(a)):
            diff |= a[i] ^ b[i]
        return diff == 0

except ImportError:
    from mpseal.aes_openssl import cbc_decrypt, cbc_encrypt, compare_digest, const, ecb_encrypt_block, prepare_key  # noqa: F401

BLOCK_SIZE = 16


def random_bytes(n):
    """IVs and keys come from the OS / hardware RNG only: on ESP8266
    os.urandom reads the hardware RNG register. There is deliberately no
    fallback to a seeded PRNG: without os.urandom sealing fails loudly."""
    data = os.urandom(n)
    if len(data) != n:
        raise OSError("os.urandom returned %d bytes, wanted %d" % (len(data), n))
    return data


def pad(data):
    """PKCS#7 to the AES block size (always adds 1..16 bytes)."""
    n = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return bytes(data) + bytes((n,)) * n


def unpad(data):
    """Returns the unpadded bytes, or None when the padding is malformed; the
    caller turns None into its one error (this is reached only after the MAC
    has verified, so it can only be a sender bug, never an oracle)."""
    if not data or len(data) % BLOCK_SIZE:
        return None
    n = data[-1]
    if n < 1 or n > BLOCK_SIZE:
        return None
    for i in range(1, n + 1):
        if data[-i] != n:
            return None
    return data[:-n]
