"""Retention: readings older than keep_days are deleted, once at start and
then every PRUNE_EVERY_S, on a storage connection of their own (a thread
beside the receiver, so deleting never holds up receiving). Device
counters, windows and keys are untouched: only old readings go."""
import logging
import threading
import time

log = logging.getLogger("mpseal.retention")

PRUNE_EVERY_S = 3600.0
DAY_S = 86400.0


def cutoff(keep_days, now=None):
    return (time.time() if now is None else now) - keep_days * DAY_S


def prune(storage, keep_days, now=None):
    """Deletes readings received more than keep_days ago; returns how many."""
    return storage.delete_readings_before(cutoff(keep_days, now))


class Pruner:
    def __init__(self, open_storage, keep_days, every_s=PRUNE_EVERY_S):
        self.open_storage = open_storage
        self.keep_days = keep_days
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpseal-retention", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        from mpseal_host.errors import MpsealError

        storage = None
        while not self._stop.is_set():
            try:
                storage = storage or self.open_storage()
                deleted = prune(storage, self.keep_days)
                if deleted:
                    log.info("retention: deleted %d readings older than %d days", deleted, self.keep_days)
            except MpsealError as exc:  # the database is busy or gone: try again next round
                log.warning("retention: %s", exc)
            self._stop.wait(self.every_s)
        if storage:
            storage.close()
