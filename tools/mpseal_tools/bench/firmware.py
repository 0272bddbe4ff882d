"""Firmware figures (the lead wires main() into `make bench`): runs the real
firmware on the MicroPython unix port in fast mode (interval 0) for 10,000
readings against a loopback acker, under the 48k target heap, for every
supported configuration (CONFIGS: each sensor combination over UDP, and the
SMS transport against a simulated modem), both ways the code can sit on a
board: in a ROMFS image (bytecode runs from flash, romfs.py) and as .mpy
files in /lib (heap). It prints
  - heap free right after boot (app built, before the first reading), per
    configuration and way, and per board of boards.yaml (its way),
  - heap high-water (largest gc.mem_alloc() seen before each collection) and
    heap retained after collection,
  - microseconds per reading (measure + seal + UDP send + verify the ack),
  - total .mpy size of firmware/ + shared/mpseal compiled for the ESP8266,
    and the size of the ROMFS image,
  - with --find-min: the smallest -X heapsize that runs the UDP default.
The acker is a few lines of CPython on mpseal (not the SQLite receiver), so
the time is the board's, not the database's."""
import argparse
import binascii
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mpseal
from mpseal import control

from mpseal_tools.sim import unix_board

READINGS = 10000
SMS_READINGS = READINGS  # an SMS round trip goes through the simulated modem's AT dialogue: ~15 ms each, ~2.5 min
# the target first, then what the tests use (once: today they are the same)
BOARD_HEAPS = tuple(dict.fromkeys((unix_board.TARGET_HEAP, unix_board.DEFAULT_HEAP)))
BOARD_NUMBER = "+4915100000001"
HOST_NUMBER = "+4915100000002"
# Every supported configuration: name -> /config.json keys on top of the
# bench's own. Pins as provisioning writes them (boards.yaml wemos).
CONFIGS = {
    "synthetic": {"sensors": [{"type": "synthetic"}]},
    "battery": {"sensors": [{"type": "battery"}]},
    "dht11": {"sensors": [{"type": "dht11", "pin": 4}]},
    "dht22": {"sensors": [{"type": "dht22", "pin": 4}]},
    "ds18b20": {"sensors": [{"type": "ds18b20", "pin": 5}]},
    "dht22+battery": {"sensors": [{"type": "dht22", "pin": 4}, {"type": "battery"}]},
    "ds18b20+battery": {"sensors": [{"type": "ds18b20", "pin": 5}, {"type": "battery"}]},
    "dht22+ds18b20+battery": {"sensors": [{"type": "dht22", "pin": 4}, {"type": "ds18b20", "pin": 5}, {"type": "battery"}]},
    "sms+dht22+battery": {"sensors": [{"type": "dht22", "pin": 4}, {"type": "battery"}], "transports": ["sms"],
                          "sms": {"host_number": HOST_NUMBER, "uart": 0, "ack_timeout_s": 20}},
}
WAYS = (("romfs", True), ("/lib", False))  # where the board's modules are: ROMFS image, or .mpy files in /lib


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


class SmsAcker:
    """The host end of the SMS link: acks every authentic reading by SMS,
    through the simulated network (sim/gsm_network, sim/modem: a GSM radio cannot exist
    here), as `mpseal sms` does. Returns the board's modem device path."""

    def __init__(self, key):
        from mpseal_tools.sim.gsm_network import Network
        from mpseal_tools.sim.modem import SimModem

        self.keys = mpseal.DeviceKeys(key)
        self.host_seq = 0
        self.network = Network()
        self.network.attach(HOST_NUMBER, self)
        self.modem = SimModem(BOARD_NUMBER, self.network)
        self.path = self.modem.start()

    def receive_sms(self, message):
        sender, text = message.sender, message.text
        try:
            header, _ = mpseal.unseal(binascii.a2b_base64(text), self.keys)
        except (mpseal.InvalidPacket, ValueError):
            return True
        self.host_seq += 1
        ack = mpseal.seal(self.keys, header.device_id, self.host_seq, control.encode_ack(header.seq), type=mpseal.TYPE_ACK)
        # from a thread: the network is not re-entered while it delivers
        threading.Thread(target=self.network.submit, args=(HOST_NUMBER, sender, binascii.b2a_base64(ack).decode().strip()), daemon=True).start()
        return True

    def stop(self):
        self.modem.stop()


def config_for(name, acker, key, readings):
    config = {
        "device_id": 1,
        "key": key.hex(),
        "receiver": {"host": "127.0.0.1", "udp_port": acker.port},
        "interval_s": 0,
        "max_readings": readings,
    }
    config.update(CONFIGS[name])
    return config


def boot_free(config, rom, heap=unix_board.TARGET_HEAP):
    """Heap free (bytes) once the app is built, before its first reading:
    what a board has left for its readings; None when it cannot boot."""
    with tempfile.TemporaryDirectory() as tmp:
        flash, state = Path(tmp) / "flash", Path(tmp) / "flash.sim"
        state.mkdir()
        unix_board.install(flash, config, rom=rom)
        after = "import app, gc\n_a = app.start()\ngc.collect()\nprint('FREE', gc.mem_free())\n"
        cmd, _ = unix_board.command(flash, state, heap, after_boot=after)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, MPSEAL_UART0=os.devnull))
        free = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("FREE ")]
        return int(free[0]) if free and out.returncode == 0 else None


def romfs_size(board="wemos"):
    """Bytes of the ROMFS image `mpseal build` makes for a board (no unix seam)."""
    from mpseal_tools.build import build

    with tempfile.TemporaryDirectory() as tmp:
        return build(board, out_root=tmp, rom=True)["romfs"]["size"]


def mpy_size(march="xtensa"):
    """Bytes of .mpy for everything that goes onto a board."""
    with tempfile.TemporaryDirectory() as tmp:
        unix_board.install(tmp, {}, march=march, rom=False)
        # hw_unix*.py is the unix port's side of the seam: never on a board
        files = [p for p in Path(tmp).rglob("*.mpy") if not p.name.startswith("hw_unix")]
        return sum(p.stat().st_size for p in files), len(files)


def run_board(heap, readings, acker, key, progress=True, config="synthetic", rom=False):
    """Runs `readings` readings of configuration `config` (CONFIGS), its
    modules in ROMFS (rom=True) or /lib; returns (exit code, last STATS
    dict, console lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp) / "flash"
        sms = SmsAcker(key) if "sms" in CONFIGS[config] else None
        unix_board.install(flash, config_for(config, acker, key, readings), rom=rom)
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

        env = {"MPSEAL_UART0": sms.path} if sms else None
        board = unix_board.Board(flash, heapsize=heap, on_line=show, env=env).start()
        deadline = time.monotonic() + 1800
        try:
            while board.running() and not failed.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError("board still running after 1800 s")
                time.sleep(0.05)
            time.sleep(0.2)  # the rest of the traceback, for the caller's message
        finally:
            board.stop()
            if sms:
                sms.stop()
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


def report_boards():
    """Heap free after boot per board of boards.yaml, the way it runs the
    code (ROMFS where its image has it, else /lib), for a UDP board with the
    synthetic sensor and with its DHT22 pin + battery."""
    from mpseal_tools.board.catalog import load_boards

    key = bytes(32)
    for board in load_boards().values():
        way = "romfs" if board.romfs else "/lib"
        free = []
        for sensors in ([{"type": "synthetic"}], [{"type": "dht22", "pin": board.pins.get("dht", 4)}, {"type": "battery"}]):
            config = {"device_id": 1, "key": key.hex(), "receiver": {"host": "127.0.0.1"}, "sensors": sensors}
            value = boot_free(config, board.romfs)
            free.append("%6d bytes" % value if value is not None else "MemoryError at boot")
        print("  %-16s %-6s free after boot: synthetic %s, dht22+battery %s" % (board.name, way, free[0], free[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench.firmware", description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=READINGS)
    parser.add_argument("--sms-readings", type=int, default=SMS_READINGS)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="only these configurations (repeatable)")
    parser.add_argument("--find-min", action="store_true", help="also search the smallest heap that runs them")
    args = parser.parse_args(argv)
    key = bytes(range(32))
    acker = Acker(key)
    size, files = mpy_size()
    print("firmware + mpseal for the ESP8266 (mpy-cross -march=xtensa): %d .mpy files, %d bytes; ROMFS image %d bytes"
          % (files, size, romfs_size()))
    heap = unix_board.TARGET_HEAP
    print("heap free after boot per board (-X heapsize=%s, unix port, 64-bit objects):" % heap, flush=True)
    report_boards()
    failed = []
    for name in args.config or CONFIGS:
        readings = args.sms_readings if "sms" in CONFIGS[name] else args.readings
        for way, rom in WAYS:
            free = boot_free(config_for(name, acker, key, readings), rom, heap)
            label = "%-22s %-6s" % (name, way)
            if free is None:
                print("  %s FAILED: MemoryError at boot under %s" % (label, heap), flush=True)
                failed.append(" ".join(label.split()))
                continue
            code, stats, lines = run_board(heap, readings, acker, key, progress=False, config=name, rom=rom)
            if not ran_all(code, stats, readings):
                errors = [line for line in lines if "Error" in line]
                print("  %s FAILED after boot (free %d): %s" % (label, free, errors[-1] if errors else stats), flush=True)
                failed.append(" ".join(label.split()))
                continue
            print("  %s %5d readings: free after boot %5d, heap high-water %5d, retained %5d bytes, %4d us/reading"
                  % (label, readings, free, stats["heap_high"], stats["heap_live"], stats["run_ms"] * 1000 // readings), flush=True)
    if args.find_min:
        print("smallest heap for %d readings (synthetic, /lib):" % args.readings, flush=True)
        print("  %dk" % find_min_heap(args.readings, acker, key))
    if failed:
        print("not in %s yet: %s (docs/firmware.md \"Memory and size\")" % (heap, ", ".join(failed)))
    romfs_failed = [label for label in failed if "romfs" in label]
    return 1 if romfs_failed else 0


if __name__ == "__main__":
    sys.exit(main())
