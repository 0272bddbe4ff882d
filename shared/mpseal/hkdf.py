# HKDF-SHA256, RFC 5869, on our HMAC (works on both runtimes).
from mpseal.aes import const
from mpseal.hmac import HmacSha256

_HASH_LEN = const(32)


def hkdf_extract(salt, ikm):
    return HmacSha256(salt or bytes(_HASH_LEN)).digest(ikm)


def hkdf_expand(prk, info, length):
    if length > 255 * _HASH_LEN:
        raise ValueError("hkdf: length too large")
    mac = HmacSha256(prk)
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = mac.digest(block, info, bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


def hkdf(ikm, salt, info, length):
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
