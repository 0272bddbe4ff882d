# Store-and-forward: sealed packets the host has not acknowledged, kept in
# flash (one file per packet under /queue, named by its sequence number in
# hex so names sort in sending order) and sent oldest first. The packet is
# stored exactly as sealed, so a resend after a lost ack carries the same
# sequence number and the host stores it once. Bounded: when full, the
# oldest packet is dropped and counted.
import os

import flashfs


class Outbox:
    def __init__(self, limit, dir="/queue"):
        self.limit = limit
        self.dir = dir
        self.dropped = 0
        flashfs.ensure_dir(dir)
        seqs = []
        for entry in os.ilistdir(dir):
            name = entry[0]
            if "." in name:  # a .tmp left by a cut mid-write: incomplete, discard
                flashfs.remove(self.dir + "/" + name)
                continue
            try:
                seqs.append(int(name, 16))
            except ValueError:
                pass
        seqs.sort()
        self.seqs = seqs  # ascending; small ints, so cheap to keep in RAM (len() = packets queued)

    def _path(self, seq):
        return self.dir + "/%08x" % seq

    def push(self, seq, packet):
        while len(self.seqs) >= self.limit:
            flashfs.remove(self._path(self.seqs.pop(0)))
            self.dropped += 1
        flashfs.write_atomic(self._path(seq), packet)
        self.seqs.append(seq)

    def oldest(self, seq=0):
        """(seq, packet) of the oldest queued packet numbered above `seq`, or None."""
        seqs = self.seqs
        for queued in seqs:
            if queued > seq:
                try:
                    with open(self._path(queued), "rb") as f:
                        return queued, f.read()
                except OSError:  # removed behind our back: forget it
                    seqs.remove(queued)
                    return self.oldest(seq)
        return None

    def remove(self, seq):
        flashfs.remove(self._path(seq))
        if seq in self.seqs:
            self.seqs.remove(seq)
