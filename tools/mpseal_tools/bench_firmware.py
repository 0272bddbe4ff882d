"""Firmware figures (the lead wires main() into `make bench`): runs the real
firmware on the MicroPython unix port in fast mode (interval 0) for 10,000
readings against a loopback acker, under a limited heap, and prints
  - heap high-water (largest gc.mem_alloc() seen before each collection) and
    heap in use after collection,
  - microseconds per reading (measure + seal + UDP send + verify the ack),
  - total .mpy size of firmware/ + shared/mpseal compiled for the ESP8266.
The acker is a few lines of CPython on mpseal (not the SQLite receiver), so
the time is the board's, not the database's."""
import argparse
import socket
import sys
import tempfile
import threading
from pathlib import Path

import mpseal
from mpseal import control

from mpseal_tools import board_sim

READINGS = 10000
BOARD_HEAPS = ("48k", board_sim.DEFAULT_HEAP)  # the target first, then what the tests use


class Acker:
    """Acks every authentic reading over UDP, as the receiver does."""

    def __init__(self, key):
        self.keys = mpseal.DeviceKeys(key)
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
            ack = mpseal.seal(self.keys, header.device_id, self.host_seq, control.encode_ack(header.seq), type=mpseal.TYPE_ACK)
            self.sock.sendto(ack, addr)


def mpy_size(march="xtensa"):
    """Bytes of .mpy for everything that goes onto a board."""
    with tempfile.TemporaryDirectory() as tmp:
        board_sim.install(tmp, {}, march=march)
        # hw_unix*.py is the unix port's side of the seam: never on a board
        files = [p for p in Path(tmp).rglob("*.mpy") if not p.name.startswith("hw_unix")]
        return sum(p.stat().st_size for p in files), len(files)


def run_board(heap, readings, acker, key):
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp) / "flash"
        config = {
            "device_id": 1,
            "key": key.hex(),
            "receiver": {"host": "127.0.0.1", "udp_port": acker.port},
            "interval_s": 0,
            "max_readings": readings,
        }
        board_sim.install(flash, config)
        step = max(readings // 5, 1)

        def progress(line):
            if line.startswith("STATS "):
                done = int(line.split('"readings": ')[1].split(",")[0].rstrip("}"))
                if done % step == 0 and done < readings:
                    print("  heap %s: %d/%d readings" % (heap, done, readings), flush=True)

        board = board_sim.Board(flash, heapsize=heap, on_line=progress).start()
        code = board.wait(1800)
        errors = [line for line in board.lines if "Error" in line]
        return code, board.stats, errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench_firmware", description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=READINGS)
    args = parser.parse_args(argv)
    key = bytes(range(32))
    acker = Acker(key)
    size, files = mpy_size()
    print("firmware + mpseal for the ESP8266 (mpy-cross -march=xtensa): %d .mpy files, %d bytes" % (files, size))
    ok = False
    for heap in BOARD_HEAPS:
        print("firmware on MicroPython unix -X heapsize=%s, %d readings, interval 0, loopback acker:" % (heap, args.readings), flush=True)
        code, stats, errors = run_board(heap, args.readings, acker, key)
        if code != 0 or not stats or stats["readings"] != args.readings or stats["errors"]:
            print("  FAILED (exit %s): %s" % (code, errors[-1] if errors else stats))
            continue
        ok = True
        print("  readings %d, acked %d, MemoryError none, errors %d" % (stats["readings"], stats["acked"], stats["errors"]))
        print("  heap high-water %d bytes (before gc.collect), in use after collect %d bytes" % (stats["heap_high"], stats["heap_live"]))
        print("  %d us per reading (measure, seal, UDP send, verify ack)" % (stats["run_ms"] * 1000 // stats["readings"]))
        print("  flash writes for sequence numbers: %d (one per %d readings)" % (stats["seq_writes"], 64))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
