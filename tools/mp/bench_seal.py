# Runs under the MicroPython unix port (see bench.py): time and allocation of
# sealing a 3-value reading. Prints "key value" lines.
import gc
import sys
import time

import mpseal
from mpseal import payload

count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
keys = mpseal.DeviceKeys(bytes(range(32)))
values = {"temperature": 21.37, "humidity": 45.2, "battery": 3.712}

# bytes allocated per seal, measured with the collector off so nothing is freed
samples = []
for seq in range(1, 101):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    mpseal.seal(keys, 1, seq, payload.encode_values(values))
    samples.append(gc.mem_alloc() - before)
    gc.enable()
samples.sort()
print("alloc_bytes_per_seal_median", samples[len(samples) // 2])
print("alloc_bytes_per_seal_max", samples[-1])

gc.collect()
retained_max = gc.mem_alloc()
start = time.ticks_us()
for seq in range(1, count + 1):
    mpseal.seal(keys, 1, seq, payload.encode_values(values))
    if seq % 2500 == 0:
        print("progress", seq)
elapsed = time.ticks_diff(time.ticks_us(), start)
gc.collect()
retained_max = max(retained_max, gc.mem_alloc())
print("seals", count)
print("us_per_seal", elapsed // count)
print("heap_in_use_after_collect_bytes", retained_max)

packet = mpseal.seal(keys, 1, 1, payload.encode_values(values))
start = time.ticks_us()
for _ in range(1000):
    mpseal.unseal(packet, keys)
print("us_per_unseal", time.ticks_diff(time.ticks_us(), start) // 1000)
