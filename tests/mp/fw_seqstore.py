# seqstore.py: one flash write per block, a reboot jumps forward to the
# reservation, a torn or missing file never restarts the counter (the store
# is unknown until a resync), 2**32-1 is the last number.
import os

import seqstore
from fw_check import read, write

s = seqstore.SequenceStore(block=64)  # no /seq.dat: unknown, not 1
assert s.next() is None and (s.next_seq, s.limit) == (None, 1) and s.flash_writes == 0  # limit: why (1 missing)
print("ok a missing store is unknown (resync), never restarted at 1")

write("/seq.dat", b"1 1\n")  # as provisioning leaves it
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

for torn in (b"38", b"385 38", bytes(8), b"0 0\n"):  # prefixes, zeros: never a smaller number
    write("/seq.dat", torn)
    s = seqstore.SequenceStore(block=64)
    assert s.next() is None and (s.next_seq, s.limit) == (None, 2), torn  # 2: unreadable
s.next_seq = s.limit = 1201  # as recovery.py takes the host's answer: highest accepted 1200
assert s.next() == 1201 and read("/seq.dat") == b"1265 1265\n"
print("ok a torn file waits for a resync, then continues above the host's number")

write("/seq.dat", b"4294967294 4294967294\n")
s = seqstore.SequenceStore(block=64)
assert [s.next(), s.next(), s.next(), s.next()] == [4294967294, 4294967295, None, None]
assert read("/seq.dat") == b"4294967296 4294967296\n"
print("ok 2**32-1 is the last number, then None")

assert seqstore.read("/nothing") == (None, 1)
write("/cmdseq.dat", b"17")  # the old single-number format, or torn
assert seqstore.read("/cmdseq.dat") == (None, 2)
write("/cmdseq.dat", b"18 18\n")
assert seqstore.read("/cmdseq.dat") == (18, 0)
print("ok /cmdseq.dat uses the same torn-write-safe pair")
