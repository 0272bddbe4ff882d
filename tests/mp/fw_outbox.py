# outbox.py: bounded, oldest first, survives a reboot, drops the oldest when
# full and counts it.
import os

import outbox
from fw_check import write

box = outbox.Outbox(limit=3)
for seq in (10, 11, 12, 13, 14):
    box.push(seq, b"packet%d" % seq)
assert len(box.seqs) == 3 and box.dropped == 2
assert box.oldest() == (12, b"packet12")
box.remove(12)
write("/queue/0000000f.tmp", b"half")  # a cut mid-write
box = outbox.Outbox(limit=3)  # reboot
assert "0000000f.tmp" not in os.listdir("/queue")
assert box.seqs == [13, 14] and box.oldest() == (13, b"packet13")
print("ok bounded, oldest first, survives reboot")

# A queue that drains and fills again keeps its list's block: refilling
# allocates nothing, so a fragmented heap cannot fail it (a failed growth
# lost every reading after it).
import gc

box = outbox.Outbox(limit=100)
for seq in range(100, 200):
    box.push(seq, b"p")
for seq in range(100, 199):
    box.remove(seq)
box.oldest()
gc.collect()
before = gc.mem_alloc()
box.remove(199)
for seq in range(200, 300):
    box.push(seq, b"p")
    box.remove(seq) if seq % 2 else None
gc.collect()
# (a regrown block is >= 512 bytes here; a few small objects may stay)
assert gc.mem_alloc() < before + 256, (before, gc.mem_alloc())
assert len(box.seqs) == 50 and box.seqs[0] == 200
print("ok a drained queue refills in its own block")
