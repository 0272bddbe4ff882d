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
        # Ascending; small ints, so cheap to keep in RAM (len() = packets
        # queued). Entries leave by slice deletion, which keeps the list's
        # block (pop() and remove() shrink it): a queue that drains and fills
        # again reuses its block instead of asking a fragmented heap for a
        # bigger one each time (a 64 -> 128 growth is 1 KB on the unix port,
        # 512 B on the ESP8266, and failing it lost every reading after it).
        self.seqs = seqs

    def _path(self, seq):
        return self.dir + "/%08x" % seq

    def push(self, seq, packet):
        seqs = self.seqs
        while len(seqs) >= self.limit:
            flashfs.remove(self._path(seqs[0]))
            del seqs[:1]
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
                    self._forget(queued)
                    return self.oldest(seq)
        return None

    def remove(self, seq):
        flashfs.remove(self._path(seq))
        self._forget(seq)

    def _forget(self, seq):
        seqs = self.seqs
        if seq in seqs:
            i = seqs.index(seq)
            del seqs[i:i + 1]  # not remove(): keeps the block (see __init__)
