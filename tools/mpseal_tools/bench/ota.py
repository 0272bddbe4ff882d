"""OTA figures (docs/ota.md), for `make bench`:
  - ECDSA P-256 verify (firmware/ecdsa_p256.py) on the MicroPython unix
    port: time per verify, the smallest heap one verify runs in, and the
    ESP8266 estimate (docs FACTS: pure-Python code runs ~50-150x slower on
    an 80 MHz ESP8266 than on this x86; an estimate, not measured on a chip);
  - one full update v1 -> v2 of the real firmware on a simulated board at the
    48k target heap, over loopback from `mpseal receive --releases`: the
    agent's heap high-water, the update time, bytes fetched;
  - a delta update of a ROMFS board (DHT22: fits 48k only from ROMFS) that
    changes one module: files fetched, the agent's and the app's heap
    high-water (without the simulated image's block), before and after;
  - a /lib board (no ROMFS: the whole app's bytecode in the heap) whose
    release 2 never sends: the rollback, then version 1 draining the
    trial's backlog at 48k; its heap high-water and what is left of 48k.
Each part runs well under a minute."""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpseal_tools.build import compile_module, mpy_cross_executable
from mpseal_tools.paths import FIRMWARE_DIR
from mpseal_tools import romfs
from mpseal_tools.sim import unix_board

VERIFIES = 20
ESP8266_SLOWDOWN = (50, 150)

_MP_VERIFY = """
import binascii, sys, time
import ecdsa_p256
count = 0
spent = 0
for line in open(sys.argv[1]):
    key, sig, msg = line.split()
    key = ecdsa_p256.public_key(binascii.unhexlify(key))
    t = time.ticks_us()
    ok = ecdsa_p256.verify(key, binascii.unhexlify(sig), binascii.unhexlify(msg))
    spent += time.ticks_diff(time.ticks_us(), t)
    assert ok
    count += 1
print("verify_us", spent // count)
"""


def _vectors(path, n):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    with open(path, "w") as f:
        for i in range(n):
            private = ec.generate_private_key(ec.SECP256R1())
            public = private.public_key().public_bytes(serialization.Encoding.X962,
                                                       serialization.PublicFormat.UncompressedPoint)
            message = os.urandom(200)
            r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
            f.write("%s %s %s\n" % (public.hex(), (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex(), message.hex()))


def verify_figures(n=VERIFIES):
    """(us per verify at 48k, smallest heap in KB that runs one)."""
    with tempfile.TemporaryDirectory() as tmp:
        compile_module(os.path.join(FIRMWARE_DIR, "ecdsa_p256.py"), os.path.join(tmp, "ecdsa_p256.mpy"),
                       "ecdsa_p256.mpy", mpy_cross_executable())
        with open(os.path.join(tmp, "verify.py"), "w") as f:
            f.write(_MP_VERIFY)
        _vectors(os.path.join(tmp, "many.txt"), n)
        _vectors(os.path.join(tmp, "one.txt"), 1)
        env = dict(os.environ, MICROPYPATH=tmp)

        def run(heap, vectors):
            return subprocess.run([unix_board.micropython_path(), "-X", "heapsize=" + heap, os.path.join(tmp, "verify.py"),
                                   os.path.join(tmp, vectors)], env=env, capture_output=True, text=True, timeout=120)

        result = run("48k", "many.txt")
        if result.returncode:
            raise RuntimeError("verify failed: " + result.stderr[-500:])
        us = int(result.stdout.split()[-1])
        low, high = 2, 48
        while high - low > 1:
            mid = (low + high) // 2
            if run("%dk" % mid, "one.txt").returncode == 0:
                high = mid
            else:
                low = mid
        return us, high


def _mark_release_2(src):
    """Release 2's change: app.py prints which release runs."""
    with open(src / "firmware" / "app.py", "a") as f:
        f.write('\nprint("app release 2")\n')


def _two_releases(tmp, build_name, change):
    """(an OtaRig in `tmp` with release 1 and release 2, `change` applied to
    its build `build_name`, and its receiver started; release 2's folder)."""
    from mpseal_tools.sim.ota_rig import OtaRig

    rig = OtaRig(tmp)
    try:
        rig.release(1)
        folder = rig.release(2, build_name, change)
        rig.start()
    except BaseException:
        rig.close()
        raise
    return rig, folder


def update_figures():
    """The v1 -> v2 update of the real firmware at the target heap:
    {"ms", "heap_high", "files", "bytes", "board_heap", "wall_s"}."""
    with tempfile.TemporaryDirectory() as tmp:
        rig, folder = _two_releases(tmp, "v2", _mark_release_2)
        try:
            board = rig.board().start()
            board.wait_for(lambda b: any(line.startswith("acked ") for line in b.lines), timeout=60)
            started = time.monotonic()
            rig.offer(2)
            board.wait_for(lambda b: "ota: v2 confirmed" in b.lines, timeout=120)
            wall = time.monotonic() - started
            board.stop()
            staged = [line for line in board.lines if " staged in " in line][0]
            words = staged.split()
            files = [line.split() for line in (folder / "release.txt").read_text().splitlines() if line.startswith("file ")]
            lib = [f for f in files if f[3].startswith("/lib/")]
            return {"ms": int(words[words.index("in") + 1]), "heap_high": int(words[words.index("high-water") + 1]),
                    "files": len(lib), "bytes": sum(int(f[2]) for f in lib), "board_heap": unix_board.TARGET_HEAP, "wall_s": wall}
        finally:
            rig.close()


def delta_figures():
    """A ROMFS board with a DHT22 (from /lib: MemoryError at boot at 48k,
    docs/firmware.md) updated v1 -> v2, v2 changing app.py only: {"files",
    "bytes", "agent_high", "app_high_v1", "app_high_v2", "board_heap"}."""
    import json

    from mpseal_tools.sim.ota_rig import lib_units

    def high(board, after):
        return max(json.loads(line[6:])["heap_high"] for line in board.lines[after:]
                   if line.startswith("STATS ")) - board.heap_offset

    with tempfile.TemporaryDirectory() as tmp:
        rig, _ = _two_releases(tmp, "v2", _mark_release_2)
        try:
            board = rig.board(rom=True, sensors=[{"type": "dht22", "pin": 4}]).start()
            board.wait_for(lambda b: len([l for l in b.lines if l.startswith("acked ")]) >= 3 and b.stats, timeout=60)
            app_v1 = high(board, 0)
            rig.offer(2)
            board.wait_for(lambda b: "ota: v2 confirmed" in b.lines, timeout=120)
            board.power_cut()  # a boot of the confirmed version
            board.wait_for(lambda b: b.lines.count("ota: v2 confirmed") >= 2, timeout=60)
            after = len(board.lines)
            board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 3
                           and any(l.startswith("STATS ") for l in b.lines[after:]), timeout=60)
            board.stop()
            words = [line for line in board.lines if " staged in " in line][0].split()
            lib = [p for p in (board.flash / "lib").rglob("*.mpy")]
            assert lib_units(board.flash) == ["app"], lib_units(board.flash)
            return {"files": len(lib), "bytes": sum(p.stat().st_size for p in lib),
                    "agent_high": int(words[words.index("high-water") + 1]) - board.heap_offset,
                    "app_high_v1": app_v1, "app_high_v2": high(board, after), "board_heap": unix_board.TARGET_HEAP}
        finally:
            rig.close()


def rollback_figures():
    """The /lib board of tests/test_ota_e2e.py's no-ack rollback at the target
    heap: {"backlog", "drained", "high", "live", "heap_bytes", "memory_errors"} for
    version 1 after the rollback (STATS lines from the rollback on)."""
    import json

    from mpseal_tools.sim.ota_rig import TRIAL_BOOTS, never_sends, numbers

    rolled = "ota: v2 not confirmed after %d boots: rolled back to v1" % TRIAL_BOOTS
    with tempfile.TemporaryDirectory() as tmp:
        rig, _ = _two_releases(tmp, "broken", never_sends)
        try:
            board = rig.board().start()
            board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=60)
            rig.offer(2)
            board.wait_for(lambda b: rolled in b.lines, timeout=180)
            after = board.lines.index(rolled)
            before = board.lines[:after]
            backlog = len({line.split()[1] for line in before if line.startswith("queued ")}
                          - {line.split()[1] for line in before if line.startswith("acked ")})
            try:
                board.wait_for(lambda b: set(numbers(b, "queued")) <= set(numbers(b, "acked"))
                               and len([l for l in b.lines[after:] if l.startswith("STATS ")]) >= 20, timeout=120)
                drained = True
            except TimeoutError:  # the figure to print, not a crash of make bench
                drained = False
            board.stop()
            stats = [json.loads(line[6:]) for line in board.lines[after:] if line.startswith("STATS ")]
            return {"backlog": backlog, "drained": drained,
                    "high": max([s["heap_high"] for s in stats] or [0]), "live": max([s["heap_live"] for s in stats] or [0]),
                    "heap_bytes": romfs.usable_heap(unix_board.micropython_path(), unix_board.TARGET_HEAP),
                    "memory_errors": sum(1 for line in board.lines[after:] if line.startswith("MemoryError"))}
        finally:
            rig.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench.ota", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    us, min_heap = verify_figures()
    low, high = ESP8266_SLOWDOWN
    print("ECDSA P-256 verify (firmware/ecdsa_p256.py, pure Python) on MicroPython unix, -X heapsize=48k:")
    print("  %.1f ms per verify (%d signatures by `cryptography`), one verify runs in a %dk heap" % (us / 1000.0, VERIFIES, min_heap))
    print("  ESP8266 at 80 MHz, estimated %d-%dx slower: %.1f-%.1f s per update (not measured on a chip)"
          % (low, high, us * low / 1e6, us * high / 1e6))
    figures = update_figures()
    print("OTA update v1 -> v2, real firmware on the unix port at -X heapsize=%s, loopback HTTP (mpseal receive --releases):"
          % figures["board_heap"])
    print("  %d files, %d bytes fetched and checked in %d ms (board side: fetch + sha256 + signature)"
          % (figures["files"], figures["bytes"], figures["ms"]))
    print("  agent heap high-water %d bytes (gc.mem_alloc at each chunk, app not loaded)" % figures["heap_high"])
    print("  offer to confirmed (command on an ack, reboot, fetch, swap, trial reading acked) %.1f s wall" % figures["wall_s"])
    delta = delta_figures()
    print("OTA delta update of a ROMFS board (DHT22; from /lib a MemoryError at boot), v2 changes app.py, -X heapsize=%s:"
          % delta["board_heap"])
    print("  %d file, %d bytes into /lib; every other module runs from /rom (its sha256 checked against the signed rom line)"
          % (delta["files"], delta["bytes"]))
    print("  agent heap high-water %d bytes; app heap high-water %d bytes running v2 (v1 from the image: %d)"
          % (delta["agent_high"], delta["app_high_v2"], delta["app_high_v1"]))
    back = rollback_figures()
    print("OTA rollback on a /lib board (no ROMFS, release 2 never sends), version 1 drains the trial's backlog, -X heapsize=%s:"
          % unix_board.TARGET_HEAP)
    print("  %d readings queued by the trial, %s; after the rollback: app heap high-water %d bytes, live %d bytes:"
          " %d of %d bytes left at the peak, %d cycles failed with a MemoryError"
          % (back["backlog"], "all delivered by version 1" if back["drained"] else "NOT delivered in 120 s",
             back["high"], back["live"], back["heap_bytes"] - back["high"], back["heap_bytes"], back["memory_errors"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
