"""Firmware figures (the lead wires main() into `make bench`): runs the real
firmware on the MicroPython unix port in fast mode (interval 0) for 10,000
readings against a loopback acker, under the 48k target heap and under the
heap the tests use, and prints
  - heap high-water (largest gc.mem_alloc() seen before each collection) and
    heap retained after collection,
  - microseconds per reading (measure + seal + UDP send + verify the ack),
  - total .mpy size of firmware/ + shared/mpseal compiled for the ESP8266,
  - with --find-min: the smallest -X heapsize that runs them all.
The acker is a few lines of CPython on mpseal (not the SQLite receiver), so
the time is the board's, not the database's."""
import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import mpseal
from mpseal import control

from mpseal_tools.sim import unix_board

READINGS = 10000
# the target first, then what the tests use (once: today they are the same)
BOARD_HEAPS = tuple(dict.fromkeys((unix_board.TARGET_HEAP, unix_board.DEFAULT_HEAP)))


class Acker:
    """Acks every authentic reading over UDP, as the receiver does."""

    def __init__(self, key, commands=None):
        """`commands`: {device seq: [command, ...]} to ride on the ack of that
        reading (mpseal.control.read_now() ...), as the receiver sends them."""
        self.keys = mpseal.DeviceKeys(key)
        self.commands = commands or {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.host_seq = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            data, addr = self.sock.recvfrom(1024)
            try:
                header, _ = mpseal.unseal(data, self.keys)
            except mpseal.InvalidPacket:
                continue
            self.host_seq += 1
            ack = mpseal.seal(self.keys, header.device_id, self.host_seq, control.encode_ack(header.seq, self.commands.get(header.seq, ())), type=mpseal.TYPE_ACK)
            self.sock.sendto(ack, addr)


def mpy_size(march="xtensa"):
    """Bytes of .mpy for everything that goes onto a board."""
    with tempfile.TemporaryDirectory() as tmp:
        unix_board.install(tmp, {}, march=march)
        # hw_unix*.py is the unix port's side of the seam: never on a board
        files = [p for p in Path(tmp).rglob("*.mpy") if not p.name.startswith("hw_unix")]
        return sum(p.stat().st_size for p in files), len(files)


def run_board(heap, readings, acker, key, progress=True):
    """Runs `readings` readings; returns (exit code, last STATS dict, console lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp) / "flash"
        config = {
            "device_id": 1,
            "key": key.hex(),
            "receiver": {"host": "127.0.0.1", "udp_port": acker.port},
            "interval_s": 0,
            "max_readings": readings,
        }
        unix_board.install(flash, config)
        step = max(readings // 5, 1)
        # A cycle that fails is caught, counted and retried by the app, so
        # under a too-small heap the board never reaches max_readings: the
        # first traceback already says this heap is not enough.
        failed = threading.Event()

        def show(line):
            if line.startswith("Traceback"):
                failed.set()
            if progress and line.startswith("STATS "):
                done = int(line.split('"readings": ')[1].split(",")[0].rstrip("}"))
                if done % step == 0 and done < readings:
                    print("  heap %s: %d/%d readings" % (heap, done, readings), flush=True)

        board = unix_board.Board(flash, heapsize=heap, on_line=show).start()
        deadline = time.monotonic() + 1800
        try:
            while board.running() and not failed.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError("board still running after 1800 s")
                time.sleep(0.05)
            time.sleep(0.2)  # the rest of the traceback, for the caller's message
        finally:
            board.stop()
        code = board.exit_codes[-1] if board.exit_codes and not failed.is_set() else None
        return code, board.stats, list(board.lines)


def ran_all(code, stats, readings):
    return code == 0 and bool(stats) and stats["readings"] == readings and stats["acked"] == readings and not stats["errors"]


def find_min_heap(readings, acker, key, low=24, high=128):
    """Smallest heap (KB) that runs `readings` readings without an error
    (binary search; allocation patterns vary a little, so +-1k)."""
    while high - low > 1:
        mid = (low + high) // 2
        code, stats, _ = run_board("%dk" % mid, readings, acker, key, progress=False)
        if ran_all(code, stats, readings):
            high = mid
        else:
            low = mid
        print("  %dk: %s" % (mid, "ok" if high == mid else "fails"), flush=True)
    return high


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench.firmware", description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=READINGS)
    parser.add_argument("--find-min", action="store_true", help="also search the smallest heap that runs them")
    args = parser.parse_args(argv)
    key = bytes(range(32))
    acker = Acker(key)
    size, files = mpy_size()
    print("firmware + mpseal for the ESP8266 (mpy-cross -march=xtensa): %d .mpy files, %d bytes" % (files, size))
    results = {}
    for heap in BOARD_HEAPS:
        print("firmware on MicroPython unix -X heapsize=%s, %d readings, interval 0, loopback acker:" % (heap, args.readings), flush=True)
        code, stats, lines = run_board(heap, args.readings, acker, key)
        results[heap] = ran_all(code, stats, args.readings)
        if not results[heap]:
            errors = [line for line in lines if "Error" in line]
            print("  FAILED (exit %s): %s" % (code, errors[-1] if errors else stats))
            continue
        print("  readings %d, acked %d, MemoryError none, errors %d" % (stats["readings"], stats["acked"], stats["errors"]))
        print("  heap high-water %d bytes (before gc.collect), retained after collect %d bytes" % (stats["heap_high"], stats["heap_live"]))
        print("  %d us per reading (measure, seal, UDP send, verify ack)" % (stats["run_ms"] * 1000 // stats["readings"]))
        print("  flash writes for sequence numbers: %d (one per %d readings)" % (stats["seq_writes"], 64))
    if args.find_min:
        print("smallest heap for %d readings:" % args.readings, flush=True)
        print("  %dk" % find_min_heap(args.readings, acker, key))
    if not results[unix_board.TARGET_HEAP]:
        print("target %s not reached yet (docs/firmware.md \"Memory and size\")" % unix_board.TARGET_HEAP)
    return 0 if results[unix_board.DEFAULT_HEAP] else 1


if __name__ == "__main__":
    sys.exit(main())
