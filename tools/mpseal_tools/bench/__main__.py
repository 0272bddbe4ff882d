"""`make bench`: numbers, not pass/fail. Protocol figures first, then the
receiver and firmware benchmarks (each prints its own section)."""
import base64
import hashlib
import hmac
import importlib
import os
import subprocess
import sys
import time

import mpseal
from mpseal import payload

from mpseal_tools.paths import SHARED_DIR, micropython_program
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
READING = {"temperature": 21.37, "humidity": 45.2, "battery": 3.712}
SEED_READING = b'{"t":21.37,"h":45.2,"v":3.7}'  # a seed-style 26-28 byte JSON reading


def rate(fn, seconds=1.0):
    count = 0
    start = time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        count += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def cpython_rates():
    keys = mpseal.DeviceKeys(os.urandom(32))
    data = payload.encode_values(READING)
    seq = iter(range(1, 10**9))
    packet = mpseal.seal(keys, 1, 1, data)
    return {
        "seal_per_s": rate(lambda: mpseal.seal(keys, 1, next(seq), data)),
        "unseal_per_s": rate(lambda: mpseal.unseal(packet, keys)),
    }


def micropython_figures(count=10000):
    script = micropython_program("bench_seal.py")
    env = dict(os.environ, MICROPYPATH=SHARED_DIR)
    proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=48k", script, str(count)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    figures = {}
    for line in proc.stdout:
        key, value = line.decode().split()
        if key == "progress":
            print("  micropython: %s/%d seals" % (value, count), flush=True)
        else:
            figures[key] = int(value)
    if proc.wait() != 0:
        raise SystemExit("mpseal: MicroPython benchmark failed: %s" % proc.stderr.read().decode().strip())
    return figures


def wire_sizes():
    from Crypto.Cipher import AES
    from cryptography.fernet import Fernet

    data = payload.encode_values(READING)
    key = os.urandom(32)
    v1 = mpseal.seal(key, 1, 1, data)
    v2 = mpseal.seal(key, 1, 1, data, version=mpseal.VERSION_COMPACT)
    # Seed recipe 1: Fernet token, then a hex HMAC-SHA256 of it, joined.
    token = Fernet(Fernet.generate_key()).encrypt(SEED_READING)
    fernet_hmac = token + b":" + hmac.new(os.urandom(32), token, hashlib.sha256).hexdigest().encode()
    # Seed recipe 2: base64(IV || AES-CBC(JSON)), no MAC at all.
    padded = SEED_READING + bytes([16 - len(SEED_READING) % 16]) * (16 - len(SEED_READING) % 16)
    iv = os.urandom(16)
    cbc_only = base64.b64encode(iv + AES.new(os.urandom(16), AES.MODE_CBC, iv).encrypt(padded))
    return [
        ("mpseal v1 standard (base64 for SMS)", len(v1), len(base64.b64encode(v1)), "yes"),
        ("mpseal v2 compact (LoRa)", len(v2), len(base64.b64encode(v2)), "yes"),
        ("seed: Fernet token + hex HMAC (%d-byte JSON)" % len(SEED_READING), len(fernet_hmac), len(fernet_hmac), "yes"),
        ("seed: base64 AES-CBC, no MAC (%d-byte JSON)" % len(SEED_READING), len(cbc_only), len(cbc_only), "NO"),
    ]


def protocol_section():
    print("== protocol (shared/mpseal) ==", flush=True)
    rates = cpython_rates()
    print("CPython %s: seal %.0f packets/s, unseal (verify+decrypt) %.0f packets/s" % (sys.version.split()[0], rates["seal_per_s"], rates["unseal_per_s"]))
    mp = micropython_figures()
    print("MicroPython unix -X heapsize=48k, %d seals, no MemoryError:" % mp["seals"])
    print("  %d us per seal, %d us per unseal" % (mp["us_per_seal"], mp["us_per_unseal"]))
    print("  %d bytes allocated per seal (median of 100; max %d)" % (mp["alloc_bytes_per_seal_median"], mp["alloc_bytes_per_seal_max"]))
    print("  heap in use after gc.collect(): %d bytes of 49152 (nothing retained per seal)" % mp["heap_in_use_after_collect_bytes"])
    print("wire size of one temperature/humidity/battery reading:")
    print("  %-48s %6s %8s %6s" % ("format", "bytes", "as text", "MAC"))
    for name, raw, text, mac in wire_sizes():
        print("  %-48s %6d %8d %6s" % (name, raw, text, mac))
    print("  budgets: one SMS = 160 characters, LoRaWAN EU868 DR0 = 51 bytes")
    return {"cpython": rates, "micropython": mp}


def downlink_section(replays=10000, seconds=10):
    """Issue 12's figures: the re-ack budget under a replay flood, and the
    cost of a resync exchange (bytes each way, round trips)."""
    import tempfile

    from mpseal import control, payload
    from mpseal_host.ingest import Ingestor
    from mpseal_host.pipeline import ReAckLimiter
    from mpseal_host.storage import Storage

    print("== downlink (idempotent acks, re-ack budget, resync) ==", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(os.path.join(tmp, "bench.sqlite"), synchronous="NORMAL")
        device = storage.add_device("bench")
        clock = [0.0]
        ingestor = Ingestor(storage)
        ingestor.limiter.clock = lambda: clock[0]
        reading = mpseal.seal(device.master_key, device.id, 1, payload.encode_values({"temperature": 21.5}))
        board, stranger = ("10.0.0.5", 4000), ("192.0.2.9", 53)
        ingestor.ingest([(reading, "udp", None, board)])
        host_seq = storage.get_device("bench").host_seq
        answered = {board: 0, stranger: 0}
        start = time.perf_counter()
        per_step = replays // seconds // 2
        for _ in range(seconds):
            clock[0] += 1.0
            batch = [(reading, "udp", None, board)] * per_step + [(reading, "udp", None, stranger)] * per_step
            for item, (_, ack) in zip(batch, ingestor.ingest(batch)):
                answered[item[3]] += ack is not None
        elapsed = time.perf_counter() - start
        total = per_step * 2 * seconds
        print("re-ack budget: per device %d + %.1f/s; per source %d + %.1f/s (known address), %d + %.1f/s (any other)" % (
            ReAckLimiter.DEVICE_BURST, ReAckLimiter.DEVICE_RATE, ReAckLimiter.DEVICE_BURST, ReAckLimiter.DEVICE_RATE,
            ReAckLimiter.NEW_BURST, ReAckLimiter.NEW_RATE))
        print("  %d copies of one reading over %d s (half from the board's address, half from a stranger's):" % (total, seconds))
        print("  answered %d (board's address) + %d (stranger), host seq +%d, %.0f duplicates/s through the pipeline" % (
            answered[board], answered[stranger], storage.get_device("bench").host_seq - host_seq, total / elapsed))
        nonce = os.urandom(control.RESYNC_NONCE_SIZE)
        sizes = []
        for version in (mpseal.VERSION_STANDARD, mpseal.VERSION_COMPACT):
            request = mpseal.seal(device.master_key, device.id, 0, control.encode_resync_request(nonce, 1),
                                  type=control.TYPE_RESYNC_REQUEST, version=version)
            clock[0] += 100.0
            answer = ingestor.ingest([(request, "udp", None, board)])[0][1]
            sizes.append((len(request), len(answer)))
        storage.close()
    print("resync exchange: 1 round trip; request %d + answer %d bytes (standard), %d + %d (compact)" % (
        sizes[0] + sizes[1]))
    return {"answered": answered, "resync_bytes": sizes}


SECTIONS = ("mpseal_tools.bench.receiver", "mpseal_tools.bench.storage", "mpseal_tools.bench.firmware",
            "mpseal_tools.bench.integrations", "mpseal_tools.bench.sims",
            "mpseal_tools.bench.ota")


def main():
    protocol_section()
    print(flush=True)
    downlink_section()
    for name in SECTIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print("== %s: not built yet ==" % name)
            continue
        print(flush=True)
        module.main()


if __name__ == "__main__":
    main()
