# ecdsa_p256.py on MicroPython: every vector of VECTORS (written by
# tests/test_ota_verify.py with `cryptography`) (one JSON object per line) verifies or fails as stated;
# prints the count, the time per verify and the heap high-water.
# usage: micropython ota_verify.py VECTORS   (MICROPYPATH reaches firmware/ and shared/)
import binascii
import gc
import json
import sys
import time

import ecdsa_p256

gc.collect()
base = gc.mem_alloc()
high = 0
spent = 0
checked = 0
vectors = open(sys.argv[1])  # one JSON object per line: the whole list does not fit 48k
for line in vectors:
    v = json.loads(line)
    try:
        key = ecdsa_p256.public_key(binascii.unhexlify(v["key"]))
    except ValueError:
        assert not v["valid"] and v["desc"].startswith("key:"), v["desc"]
        checked += 1
        continue
    sig = binascii.unhexlify(v["sig"])
    msg = binascii.unhexlify(v["msg"])
    gc.collect()
    t = time.ticks_us()
    ok = ecdsa_p256.verify(key, sig, msg)
    spent += time.ticks_diff(time.ticks_us(), t)
    high = max(high, gc.mem_alloc() - base)
    assert ok == v["valid"], v["desc"]
    checked += 1
print("ok %d vectors, %d us per verify, heap +%d bytes" % (checked, spent // checked, high))
