# Randomness for IVs and keys. Only the OS / hardware RNG: on ESP8266
# os.urandom reads the hardware RNG register. There is deliberately no fallback
# to a seeded PRNG: a board without os.urandom fails loudly here.
import os


def random_bytes(n):
    data = os.urandom(n)
    if len(data) != n:
        raise OSError("os.urandom returned %d bytes, wanted %d" % (len(data), n))
    return data
