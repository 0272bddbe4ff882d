"""The receiver's one writer: a thread that owns the write connection.

The event loop only receives and sends; everything that touches the
database for ingest (the pipeline, the batch transaction, sealing acks)
runs here, so a slow commit, a big batch or another process holding the
write lock never stops the loop from receiving, answering the API, or
re-acknowledging readings that are already committed (receiver.py keeps
those acks).

submit() queues packets from the loop; the thread takes everything queued
(up to MAX_PER_TRANSACTION) as one Ingestor.ingest() transaction and hands the
results back to the loop with call_soon_threadsafe. Batches grow with load,
which is what keeps commits cheap. The queue is bounded (MAX_QUEUED): beyond
it a UDP datagram is dropped (counted; the board retransmits) and an HTTP
body answered 503.

A lock held by another process: the busy timeout is short (BUSY_POLL_S), each
timeout is one retry of the same batch; one log line when the wait starts,
one every LOCK_LOG_EVERY_S while it lasts, one when it ends. Nothing is
refused because of it (a wait longer than any timeout is still a wait).
"""
import logging
import threading
import time

from mpseal_host.ingest import Ingestor, RejectionLog
from mpseal_host.storage import NO_DEVICE, StorageBusy

log = logging.getLogger("mpseal.receiver")

MAX_PER_TRANSACTION = 8192  # packets per commit: bounds one transaction's time (~0.2 s) and memory
MAX_QUEUED = 100_000  # packets waiting for the writer (~30 MB at most) before new ones are dropped
BUSY_POLL_S = 0.25  # busy timeout of the write connection: how often a locked database is tried again
LOCK_LOG_EVERY_S = 10.0


class StorageWriter:
    """deliver(tickets, results, counted) is called on the loop thread for
    each batch: tickets as given to submit(), results [(Outcome, ack or
    None)], counted the tickets given to count_rejection() in that batch."""

    def __init__(self, storage, loop, deliver, max_queued=MAX_QUEUED, on_lock_wait=None):
        self.storage = storage
        self.loop = loop
        self.deliver = deliver
        self.on_lock_wait = on_lock_wait  # called on the loop when a lock wait starts
        self.max_queued = max_queued
        self.ingestor = Ingestor(storage, RejectionLog(limit=None))
        self.cond = threading.Condition()
        self.items = []
        self.tickets = []
        self.rejections = {}  # (NO_DEVICE, reason) -> n refused before the pipeline
        self.counted = []  # their tickets
        self.stopping = False
        self.lock_wait_since = None  # monotonic time the current lock wait began, or None
        self.counters = {"batches": 0, "dropped_queue_full": 0, "lock_waits": 0}
        self.thread = threading.Thread(target=self._run, name="mpseal-writer", daemon=True)

    def start(self):
        self.storage.set_busy_timeout(BUSY_POLL_S)
        self.thread.start()

    @property
    def waiting_for_lock(self):
        return self.lock_wait_since is not None

    def queued(self):
        return len(self.items)

    def submit(self, items, tickets):
        """Queues packets (loop thread). Returns how many were taken: the rest
        (a full queue) is the caller's to refuse."""
        with self.cond:
            room = self.max_queued - len(self.items)
            if room < len(items):
                self.counters["dropped_queue_full"] += len(items) - max(room, 0)
                items, tickets = items[: max(room, 0)], tickets[: max(room, 0)]
            if items:
                self.items.extend(items)
                self.tickets.extend(tickets)
                self.cond.notify()
        return len(items)

    def count_rejection(self, reason, ticket=None):
        """Counts a refusal that never reached the pipeline, in the next
        batch; the ticket comes back in deliver()'s `counted` once committed."""
        with self.cond:
            key = (NO_DEVICE, reason)
            self.rejections[key] = self.rejections.get(key, 0) + 1
            if ticket is not None:
                self.counted.append(ticket)
            self.cond.notify()

    def stop(self, timeout=30.0):
        """Stores what is queued, then ends the thread."""
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.thread.join(timeout)

    # --- the thread ----------------------------------------------------------

    def _take(self):
        with self.cond:
            while not self.items and not self.rejections and not self.stopping:
                self.cond.wait()
            if not self.items and not self.rejections:
                return None
            items, tickets = self.items[:MAX_PER_TRANSACTION], self.tickets[:MAX_PER_TRANSACTION]
            del self.items[:MAX_PER_TRANSACTION], self.tickets[:MAX_PER_TRANSACTION]
            rejections, self.rejections = self.rejections, {}
            counted, self.counted = self.counted, []
            return items, tickets, rejections, counted

    def _on_busy(self):
        now = time.monotonic()
        if self.lock_wait_since is None:
            self.lock_wait_since = self.last_lock_log = now
            self.counters["lock_waits"] += 1
            if self.on_lock_wait is not None:
                self.loop.call_soon_threadsafe(self.on_lock_wait)
            log.warning(
                "database %s is locked by another process: storing waits (%d packets queued);"
                " receiving, the API and re-acks of stored readings go on",
                self.storage.location, len(self.items) + 1)
        elif now - self.last_lock_log >= LOCK_LOG_EVERY_S:
            self.last_lock_log = now
            log.warning("database %s still locked after %.0f s (%d packets queued)",
                        self.storage.location, now - self.lock_wait_since, len(self.items))
        if self.stopping and now - self.lock_wait_since > 5.0:
            raise StorageBusy("still locked at shutdown")  # -> storage_error: nothing acked, boards retry

    def _run(self):
        while True:
            taken = self._take()
            if taken is None:
                return
            items, tickets, rejections, counted = taken
            try:
                results = self.ingestor.ingest(items, rejections=rejections, on_busy=self._on_busy)
            except Exception:  # Ingestor already turns storage failures into outcomes; this is a bug
                log.exception("writer: a batch of %d packets failed", len(items))
                results = [(None, None)] * len(items)
            if self.lock_wait_since is not None:
                log.warning("database %s lock released after %.1f s; storing again",
                            self.storage.location, time.monotonic() - self.lock_wait_since)
                self.lock_wait_since = None
            self.counters["batches"] += 1
            if tickets or counted:
                try:
                    self.loop.call_soon_threadsafe(self.deliver, tickets, results, counted)
                except RuntimeError:  # the loop is closed (shutdown): nobody left to answer
                    pass
