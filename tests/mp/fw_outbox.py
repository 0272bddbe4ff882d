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
