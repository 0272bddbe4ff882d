"""LoRaWAN figures for `make bench`: airtime of one reading per data rate
(the board's own lorawan.airtime_us, Semtech's formula), readings a day the
1 % duty cycle allows, the board's heap with the LoRa transport loaded (the
real firmware on the unix port, simulated SX1276), flash writes per
1,000 frames (the board's seqstore, run under MicroPython), and the
downlinks a day `mpseal ttn`'s cumulative-ack policy spends (ttn.AckPolicy,
run over a simulated day)."""
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mpseal
from mpseal.values import encode_values
from mpseal_tools.paths import FIRMWARE_DIR
from mpseal_tools.sim import unix_board

READING = {"temperature": 21.37, "humidity": 45.2, "battery": 3.712}
LORAWAN_OVERHEAD = 13  # MHDR 1 + FHDR 7 (no FOpts) + FPort 1 + MIC 4
HEAPS = ("48k", "56k", "60k", "64k", "68k", "72k")
FRAMES = 1000
TTN_FAIR_USE_AIRTIME_S = 30  # TTN's fair use policy: 30 s of uplink airtime per device per day


def region():
    sys.path.insert(0, FIRMWARE_DIR)  # lorawan.py and region_eu868.py import on CPython too
    try:
        import lorawan
        import region_eu868
    finally:
        sys.path.pop(0)
    return lorawan, region_eu868


def airtime_section():
    lorawan, r = region()
    packet = mpseal.seal(os.urandom(32), 1, 1, encode_values(READING), version=mpseal.VERSION_COMPACT)
    size = len(packet) + LORAWAN_OVERHEAD
    bands = len(set(r.CHANNEL_BAND))
    print("LoRaWAN EU868, one reading = %d-byte compact packet in a %d-byte PHYPayload (CR 4/5, 8-symbol preamble, CRC):" % (len(packet), size))
    print("  %-4s %-10s %10s %14s %16s %14s" % ("DR", "SF/BW", "airtime", "per sub-band", "per day, 1%%x%d" % bands, "TTN 30 s/day"))
    for dr in range(len(r.SPREADING_FACTOR)):
        sf, bw = r.SPREADING_FACTOR[dr], r.BANDWIDTH_KHZ[dr]
        us = lorawan.airtime_us(sf, bw, size, r.PREAMBLE)
        per_band = 86400 * 1000000 // (us * 100)  # 1 %: one frame per 100 x its airtime
        print("  DR%-2d SF%-2d/%-3d %8.1f ms %10d/day %12d/day %10d/day" % (dr, sf, bw, us / 1000, per_band, per_band * bands, TTN_FAIR_USE_AIRTIME_S * 1000000 // us))
    print("  (%d uplink sub-bands of 1 %% in TTN's 8-channel plan; TTN's fair use is the tighter limit)" % bands)


def run_lora_board(heap, readings=3):
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp) / "flash"
        config = {
            "device_id": 1,
            "key": bytes(range(32)).hex(),
            "receiver": {"host": "127.0.0.1"},
            "transports": ["lorawan"],
            "lorawan": {"dev_addr": "260b0001", "nwk_s_key": "22" * 16, "app_s_key": "33" * 16, "data_rate": 5},
            "interval_s": 0,
            "max_readings": readings,
        }
        unix_board.install(flash, config)
        failed = threading.Event()
        env = os.environ.pop("MPSEAL_LORA_AIR", None)  # no gateway: frames go nowhere, both RX windows time out
        board = unix_board.Board(flash, heapsize=heap, on_line=lambda line: line.startswith("Traceback") and failed.set()).start()
        deadline = time.monotonic() + 60
        try:
            while board.running() and not failed.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            board.stop()
            if env:
                os.environ["MPSEAL_LORA_AIR"] = env
        ok = not failed.is_set() and board.exit_codes[-1:] == [0] and board.stats and board.stats["readings"] == readings
        return ok, board.stats


# What a real board allocates for its radio bus (machine.SPI and three Pins): a few small
# objects, stood in for by this module when measuring what the simulated chip costs instead.
BUS_STUB = b"""
class P:
    def value(self, v=None):
        return 0
class S:
    def write(self, d):
        pass
    def readinto(self, b, w=0):
        pass
def bus():
    return S(), P(), P(), P()
"""
CHIP_PROBE = """
import sys, gc, os, socket, select, struct
sys.path[:] = ['/rom']
gc.collect()
a = gc.mem_alloc()
import %s as m
b = m.bus()
if hasattr(b[0], 'chip'):
    b[0].chip.regs[1] = 0x81
    b[0].chip.write(1, 0x83)  # one TX: the socket opens
gc.collect()
print(gc.mem_alloc() - a)
"""


def simulated_chip_heap():
    """Live heap bytes (after gc.collect) of hw_unix_sx1276 imported from
    ROMFS, instantiated and after one TX (socket open), minus the same for
    BUS_STUB: what the simulated SX1276 (module globals, classes, register
    file, FIFO, socket) costs on top of a real board's bus objects."""
    from mpseal_tools import romfs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bus_stub.py").write_bytes(BUS_STUB)
        cross = os.path.join(os.path.dirname(unix_board.micropython_path()), "mpy-cross")
        for name, src in (("bus_stub", folder / "bus_stub.py"), ("hw_unix_sx1276", Path(FIRMWARE_DIR) / "hw_unix_sx1276.py")):
            subprocess.run([cross, "-o", str(folder / (name + ".mpy")), "-s", "/rom/%s.py" % name, str(src)], check=True, timeout=60)
        image = folder / "rom.img"
        image.write_bytes(romfs.image_from_folder(folder))
        costs = []
        for name in ("bus_stub", "hw_unix_sx1276"):
            code = romfs.LAUNCHER_READ % (str(image), image.stat().st_size) + romfs.LAUNCHER_MOUNT + CHIP_PROBE % name
            out = subprocess.run([unix_board.micropython_path(), "-X", "heapsize=256k", "-c", code], capture_output=True, text=True,
                                 timeout=60, env=dict(os.environ, MPSEAL_LORA_AIR="127.0.0.1:9"))
            costs.append(int(out.stdout.split()[-1]))
    return costs[1] - costs[0]


def heap_section():
    print("firmware with transport_lorawan on MicroPython unix (64-bit), 3 readings, simulated SX1276:", flush=True)
    high = None
    for heap in HEAPS:
        ok, stats = run_lora_board(heap)
        print("  -X heapsize=%s: %s" % (heap, "runs, heap high-water %d bytes" % stats["heap_high"] if ok else "fails (MemoryError)"), flush=True)
        if ok:
            high = stats["heap_high"]
            break
    if high is None:
        print("  no heap up to %s runs it" % HEAPS[-1])
    print("  the simulated SX1276 itself (hw_unix_sx1276 from ROMFS, after one TX) costs %d bytes of live heap more than"
          " a real board's bus objects; a real board keeps FIFO and registers in the chip" % simulated_chip_heap(), flush=True)


FLASH_SCRIPT = """
import os, sys
os.umount('/')
os.mount(os.VfsPosix(%r), '/')
os.mount(os.VfsPosix(%r), '/fw')
os.chdir('/')
sys.path[:] = ['/fw', '/lib']
import seqstore
f = open('/seq.dat', 'wb')  # as provisioning leaves it ("1 1"): without it the store is unknown and hands out nothing
f.write(b'1 1\\n')
f.close()
seq = seqstore.SequenceStore()
for _ in range(%d):
    if seq.next() is None:
        raise SystemExit('the sequence store handed out no number')
print(seq.flash_writes)
"""


def flash_section():
    with tempfile.TemporaryDirectory() as tmp:
        code = FLASH_SCRIPT % (tmp, FIRMWARE_DIR, FRAMES)
        out = subprocess.run([unix_board.micropython_path(), "-c", code], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            print("flash writes: failed: %s" % (out.stderr.strip() or out.stdout.strip())[-200:])
            return
        seq_writes = int(out.stdout)
    print("flash writes per %d LoRaWAN frames (one reading each, always-on or interval mode):" % FRAMES)
    print("  /seq.dat %d (the FCnt is the mpseal sequence number: no file of its own); +1 per power-on boot, 0 per deep-sleep wake" % seq_writes)
    print("  /unacked: 1 file written per frame on air, 1 removed when a cumulative ack names it stored (%d + %d);" % (FRAMES, FRAMES))
    print("  a resend after a gap writes nothing more (same file), its fresh FCnt comes from the same /seq.dat block")


def downlinks_section():
    """Downlinks per device per day under the default AckPolicy, by reading
    interval: what TTN's fair use (10/day) sees, and how many readings wait
    (on the board, in /unacked) between two acks at most."""
    from mpseal_host import ttn

    print("cumulative acks (mpseal ttn defaults: after %d readings, every %d h, at most %d/day; TTN fair use ~10/day):"
          % (ttn.ACK_AFTER_READINGS, ttn.ACK_EVERY_S // 3600, ttn.MAX_DOWNLINKS_PER_DAY))
    print("  %-16s %12s %14s %22s" % ("reading every", "readings/day", "downlinks/day", "readings waiting, max"))
    for interval in (60, 180, 300, 900, 3600, 4 * 3600):
        policy = ttn.AckPolicy()
        downlinks = waiting = most = 0
        t = 0.0
        while t < ttn.DAY_S * 3:  # three days: the first one starts with an empty history
            waiting += 1
            if policy.due(1, False, t):
                policy.sent(1, t)
                if t >= ttn.DAY_S * 2:
                    downlinks += 1
                waiting = 0
            most = max(most, waiting)
            t += interval
        note = "" if most < 64 else "  (beyond 64: a frame lost then cannot be resent)"
        print("  %-16s %12d %14d %22d%s" % ("%d s" % interval, ttn.DAY_S // interval, downlinks, most, note))


def main(argv=None):
    airtime_section()
    downlinks_section()
    flash_section()
    heap_section()


if __name__ == "__main__":
    main()
