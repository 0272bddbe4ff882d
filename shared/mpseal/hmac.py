# HMAC-SHA256 (RFC 2104) on hashlib alone: MicroPython has no `hmac` module and
# its sha256 objects cannot be copied, so the padded keys are kept instead of
# pre-hashed states. The same code runs on CPython, so both runtimes produce the
# same tags by construction.
import hashlib

# compare_digest lives in the crypto seam (a C function on CPython) and is
# re-exported here, where callers look for it.
from mpseal.aes import compare_digest, const  # noqa: F401

_BLOCK_SIZE = const(64)  # folded at compile time: no name on the board


class HmacSha256:
    """A keyed HMAC-SHA256; build once per key, call digest() per message."""

    def __init__(self, key):
        if len(key) > _BLOCK_SIZE:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK_SIZE - len(key))
        self._inner_pad = bytes(b ^ 0x36 for b in key)
        self._outer_pad = bytes(b ^ 0x5C for b in key)

    def digest(self, *parts):
        inner = hashlib.sha256(self._inner_pad)
        for part in parts:
            inner.update(part)
        outer = hashlib.sha256(self._outer_pad)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, data):
    return HmacSha256(key).digest(data)
