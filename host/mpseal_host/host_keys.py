"""mpseal.DeviceKeys for the receiver: the same keys, with HMACs that start
from precomputed states.

mpseal.hmac.HmacSha256 (the board's) hashes the 64-byte inner and outer key
pads again for every message, because MicroPython's sha256 objects cannot be
copied. CPython's can: hashing each pad once per key and copying the state
per message saves two of the four SHA-256 compressions of a tag (a reading's
check and its ack's seal). Same function, same tags (tests compare the two);
everything else is DeviceKeys as the board has it.
"""
import hashlib

from mpseal.keys import DeviceKeys

_BLOCK_SIZE = 64


class CopiedHmacSha256:
    """HMAC-SHA256 (RFC 2104) with the key pads hashed once; digest(*parts)
    as mpseal.hmac.HmacSha256's."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key):
        if len(key) > _BLOCK_SIZE:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK_SIZE - len(key))
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, *parts):
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def host_keys(master_key):
    """DeviceKeys(master_key) with CopiedHmacSha256 in both directions."""
    keys = DeviceKeys(master_key)
    for direction in keys.directions:
        direction.mac = CopiedHmacSha256(direction.mac_key)
    return keys
