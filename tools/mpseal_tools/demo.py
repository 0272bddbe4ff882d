"""`make demo`: the whole product on one machine. Starts `mpseal receive` on
SQLite in demo-run/, registers a device, runs the real firmware on the
MicroPython unix port (a folder as its flash) sending synthetic readings every
second, and prints the web page URL. Runs until Ctrl-C, or --seconds N, then
prints a summary: readings sent and acknowledged (the board's counters),
stored and rejected (the receiver's API).

    python -m mpseal_tools.demo [--seconds N]
"""
import argparse
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from mpseal_tools.sim import unix_board
from mpseal_tools.receiver_proc import ReceiverProcess, free_port

from mpseal_tools.paths import REPO_ROOT

RUN_DIR = Path(REPO_ROOT) / "demo-run"
DEVICE = "demo"
DEVICE_ID = 1
DEFAULT_UDP_PORT = 4740
DEFAULT_HTTP_PORT = 8740
DEFAULT_API_PORT = 8741
PROGRESS_EVERY_S = 5
BOARD_HEAP = unix_board.DEFAULT_HEAP


def port_or_free(port, kind):
    """The documented default port when it is free, else any free one (a
    receiver may already run on this machine)."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port(kind)


def board_config(receiver, key):
    return {
        "device_id": DEVICE_ID,
        "name": DEVICE,
        "key": key.hex(),
        "epoch": 0,
        "receiver": {"host": "127.0.0.1", "udp_port": receiver.udp_port, "http_port": receiver.http_port},
        "transports": ["udp", "http"],
        "sensors": [{"type": "synthetic"}],
        "interval_s": 1,
        "power": "always-on",
    }


def summary(board, receiver):
    stats = board.stats or {}
    try:
        device = receiver.device(DEVICE)
    except OSError:
        device = {}
    return {
        "sent": stats.get("readings", 0),
        "acknowledged": stats.get("acked", 0),
        "queued_on_board": stats.get("queue", 0),
        "stored": device.get("stored", 0),
        "duplicates": device.get("duplicates", 0),
        "rejected": device.get("rejected", 0),
    }


def start_board(run_dir, receiver, key, out):
    flash = run_dir / "flash"
    unix_board.install(flash, board_config(receiver, key))
    board = unix_board.Board(flash, heapsize=BOARD_HEAP, log_path=run_dir / "board.log")
    print("demo: receiver on udp 127.0.0.1:%d, database %s" % (receiver.udp_port, receiver.db), file=out)
    print("demo: board '%s' (MicroPython unix port, flash folder %s, log %s)" % (DEVICE, flash, run_dir / "board.log"), file=out)
    print("demo: web page  %s" % receiver.url, file=out)
    return board.start()


def watch(board, receiver, seconds, out):
    """Progress every few seconds until Ctrl-C (KeyboardInterrupt), the
    time is up, or the board stops by itself."""
    print("demo: %s" % ("running for %g s" % seconds if seconds else "running; Ctrl-C to stop"), file=out, flush=True)
    start = time.monotonic()
    next_progress = start + PROGRESS_EVERY_S
    while seconds is None or time.monotonic() - start < seconds:
        time.sleep(0.2)
        if not board.running():
            print("demo: the board stopped; last lines:\n  " + "\n  ".join(board.lines[-10:]), file=out)
            return
        if time.monotonic() >= next_progress:
            s = summary(board, receiver)
            # Two sources read a moment apart: the board logs its counters
            # after the cycle the receiver already stored, so say whose they are.
            print("demo: board sent %(sent)d, acknowledged %(acknowledged)d; receiver stored %(stored)d" % s, file=out, flush=True)
            next_progress += PROGRESS_EVERY_S


def run(seconds=None, run_dir=RUN_DIR, out=sys.stdout):
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh database and board each time
    receiver = ReceiverProcess(
        run_dir, udp_port=port_or_free(DEFAULT_UDP_PORT, socket.SOCK_DGRAM), http_port=port_or_free(DEFAULT_HTTP_PORT, socket.SOCK_STREAM),
        api_port=port_or_free(DEFAULT_API_PORT, socket.SOCK_STREAM), movable=True
    )
    key = os.urandom(32)
    receiver.add_device(DEVICE, key, DEVICE_ID)
    receiver.start()
    board = None
    try:
        board = start_board(run_dir, receiver, key, out)
        watch(board, receiver, seconds, out)
    except KeyboardInterrupt:
        pass
    finally:
        if board is not None:
            board.stop()
            result = summary(board, receiver)
        receiver.stop()
    if board is None:
        raise RuntimeError("the board did not start")
    print(
        "demo summary: sent %(sent)d, acknowledged %(acknowledged)d, stored %(stored)d, rejected %(rejected)d"
        " (duplicates %(duplicates)d, still queued on the board %(queued_on_board)d)" % result,
        file=out,
        flush=True,
    )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="stop after this many seconds and print a summary")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="scratch folder, emptied first (default demo-run/)")
    args = parser.parse_args(argv)
    try:
        result = run(args.seconds, args.run_dir)
    except (RuntimeError, FileNotFoundError) as exc:
        print("mpseal: demo failed: %s" % exc, file=sys.stderr)
        return 1
    return 0 if result["stored"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
