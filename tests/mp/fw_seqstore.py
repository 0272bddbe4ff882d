# seqstore.py: one flash write per block, a reboot jumps forward to the
# reservation, a torn file never restarts the counter.
import os

import seqstore
from fw_check import raises, read, write

s = seqstore.SequenceStore(block=64)
got = [s.next() for _ in range(200)]
assert got == list(range(1, 201)), got[:5]
assert s.flash_writes == 4, s.flash_writes  # at 1, 65, 129, 193
assert read("/seq.dat") == b"257 257\n"
print("ok 200 numbers, 4 writes")

s = seqstore.SequenceStore(block=64)  # power cut, reboot
assert s.next() == 257 and s.flash_writes == 1
print("ok reboot jumps forward to the reservation")

s = seqstore.SequenceStore(block=64, resume=300)  # deep-sleep wake with RTC memory
assert s.next() == 300 and s.flash_writes == 0
s = seqstore.SequenceStore(block=64, resume=5)  # RTC memory from long ago: ignored
assert s.next() == 321
print("ok resume from RTC memory only inside the reservation")

os.remove("/seq.dat")  # cut between FAT's remove and rename: the .tmp holds the value
write("/seq.dat.tmp", b"385 385\n")
assert seqstore.SequenceStore(block=64).next() == 385
assert read("/seq.dat") == b"449 449\n" and "seq.dat.tmp" not in os.listdir("/")
print("ok falls back to the .tmp file")

write("/seq.dat", b"38")  # torn: a prefix of "385 385\n"
assert "re-provision" in raises(seqstore.SequenceStoreError, seqstore.SequenceStore)
print("ok a torn file stops the board instead of reusing numbers")
