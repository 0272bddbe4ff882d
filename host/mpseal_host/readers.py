"""API reads off the event loop and out of its process: a small pool of
worker processes, each with its own read-only connection (WAL: readers
never wait for the writer, and a lock held by another process does not stop
them).

Processes, not threads: decoding 10,000 readings and encoding their JSON is
Python work that holds the GIL. In threads of the receiver it competes with
the event loop for the GIL, and on busy cores a reader preempted while
holding it stalls the loop for a scheduler slice: 16 clients looping
`readings?limit=10000` then moved the unloaded UDP ack p99 past 100 ms
(make bench). In worker processes that share nothing with the loop but a
pipe, and running at a lower priority (WORKER_NICE), they cannot delay a board's
ack; they only compete for CPU, and lose.

A worker dies with the receiver, even a SIGKILLed one (nothing else would
end it: its siblings keep the work queue's pipe open, so it never sees EOF):
on Linux the kernel signals it when the receiver dies (PR_SET_PDEATHSIG);
everywhere a watchdog thread polls its parent pid (PARENT_POLL_S) as well.

Handlers pass a module-level function of a Storage (picklable) and its
arguments; it runs in a worker and should return what the loop sends as is
(encoded JSON).
"""
import asyncio
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

READ_WORKERS = 2
WORKER_NICE = 10
PARENT_POLL_S = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h

_storage = None  # the worker's read-only connection


def _die_with(parent):
    """Ends this worker when `parent` (the receiver) is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends it
    if os.getppid() != parent:  # died before the line above took effect
        os._exit(0)

    def watch():
        while True:
            threading.Event().wait(PARENT_POLL_S)
            if os.getppid() != parent:  # reparented: the receiver died
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(location, parent):
    global _storage
    _die_with(parent)
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    from mpseal_host.storage import open_storage

    _storage = open_storage(location, read_only=True)


def _call(fn, args):
    return fn(_storage, *args)


def _ping(storage):
    return True


class ReadPool:
    def __init__(self, path, workers=READ_WORKERS):
        self.path = path
        self.workers = workers
        self.executor = self._start()

    def _start(self):
        # spawn: the receiver has threads (the writer); forking it is unsafe.
        executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(self.path, os.getpid()))
        for _ in range(self.workers):
            executor.submit(_call, _ping, ())  # start the workers now, not at the first request
        return executor

    async def run(self, fn, *args):
        """fn(storage, *args) in a worker process."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, _call, fn, args)
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a new pool, try once more
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._start()
            return await loop.run_in_executor(self.executor, _call, fn, args)

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
