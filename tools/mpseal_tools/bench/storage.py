"""Storage benchmark: `python -m mpseal_tools.bench.storage` (part of `make bench`).

Stored readings/s of real `mpseal receive` processes over UDP loopback, in
one run:
  * PostgreSQL (a throwaway cluster, fsync on): 1, 2 and 4 receivers sharing
    one database, the fleet's devices spread over them as a load balancer
    would (device i -> receiver i % N);
  * SQLite: one receiver on an empty database, and on one with 1,000
    devices x 1,000 readings of history (does ingest age?);
  * beside them the crypto ceiling on one core (unseal + ack seal, what a
    stored reading costs in crypto) and the CPU seconds per stored reading of
    the receivers and of the PostgreSQL server, which say where the next
    bottleneck is.
The client is deliberately cheap (replies are counted, not opened); what was
stored is counted in the database afterwards. ~90 s in all.
"""
import argparse
import hashlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

import mpseal
from mpseal import payload as payload_codec
from mpseal_host.pipeline import Batch, DeviceState
from mpseal_host.storage import NewReading, open_storage
from mpseal_host.storage.model import value_json

DEVICES = 200
WINDOW = 2048  # packets in flight over all receivers
RUN_SECONDS = 8.0
HISTORY_DEVICES = 1000
HISTORY_READINGS = 1000
SEQS_PER_BATCH = 8  # history writing: 8,000 readings per transaction
READING = {"temperature": 21.37, "humidity": 48.2, "battery": 3.912}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def device_key(i):
    """Fixed keys, so one pool of sealed packets serves every fresh database."""
    return hashlib.sha256(b"mpseal-bench-%d" % i).digest()


def seal_pool(devices, first_seq, count, seconds=12.0):
    """Packets round-robin over `devices` ids (seq order per device)."""
    data = payload_codec.encode_values(READING)
    keys = {d: mpseal.DeviceKeys(device_key(d)) for d in devices}
    packets = []
    started = time.perf_counter()
    for i in range(count):
        d = devices[i % len(devices)]
        packets.append((d, mpseal.seal(keys[d], d, first_seq + i // len(devices), data)))
        if time.perf_counter() - started > seconds:
            break
    return packets


def crypto_cpu_us(count=5000):
    """CPU µs one stored reading costs in crypto alone (unseal + seal its
    ack), by process time: unlike wall-clock rates, a busy machine does not
    change it."""
    from mpseal.control import encode_ack
    from mpseal.packet import TYPE_ACK

    keys = mpseal.DeviceKeys(device_key(0))
    data = payload_codec.encode_values(READING)
    packets = [mpseal.seal(keys, 1, i + 1, data) for i in range(count)]
    start = time.process_time()
    for seq, packet in enumerate(packets, start=1):
        mpseal.unseal(packet, keys)
        mpseal.seal(keys, 1, seq, encode_ack(seq), type=TYPE_ACK)
    return (time.process_time() - start) / count * 1e6


def register(location, devices, **options):
    storage = open_storage(location, **options)
    for d in devices:
        storage.add_device("bench-%04d" % d, key=device_key(d), device_id=d)
    return storage


def add_history(storage, devices, readings):
    """`readings` stored readings per device, written through the contract in
    batches of SEQS_PER_BATCH seqs for every device (as a fleet's arrive)."""
    data = payload_codec.encode_values(READING)
    value = value_json(READING)
    states = {}
    for device, keys, has_commands in storage.ingest_states(devices):
        states[device.id] = DeviceState(device, {}, has_commands)
    now = time.time() - readings * 60.0
    for first in range(1, readings + 1, SEQS_PER_BATCH):
        batch = Batch(now + first * 60.0)
        for seq in range(first, min(first + SEQS_PER_BATCH, readings + 1)):
            for d in devices:
                state = states[d]
                state.window.update(seq)
                state.last_seq = seq
                state.last_seen = batch.now
                state.last_transport = "udp"
                state.delta_received += 1
                state.delta_stored += 1
                batch.devices[d] = state
                batch.readings.append(NewReading(d, seq, batch.now, "udp", payload_codec.FORMAT_VALUES, data, value, None))
        with storage.ingest_transaction(devices, batch.now):
            storage.write_batch(batch)
        for state in states.values():
            state.clear_deltas()


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLOCK_TICKS


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def start_receiver(location):
    process = subprocess.Popen(
        [sys.executable, "-m", "mpseal_tools.cli", "receive", "--db", location, "--udp", "127.0.0.1:0", "--http", "off", "--api", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = process.stdout.readline()
        if "listening on udp" in line:
            host, port = line.split("udp ")[1].split(",")[0].strip().rsplit(":", 1)
            return process, (host, int(port))
        if not line:
            break
    process.kill()
    raise RuntimeError("receiver did not start on %s" % location)


def blast(addresses, packets, seconds):
    """Sends packets (device d -> addresses[d % N]) keeping <= WINDOW without
    a reply; a stall of 0.5 s counts the outstanding ones as lost."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setblocking(False)
    n = len(addresses)
    sent = replies = 0
    start = last = time.perf_counter()
    deadline = start + seconds
    while sent < len(packets) and time.perf_counter() < deadline:
        while sent - replies < WINDOW and sent < len(packets):
            d, data = packets[sent]
            try:
                sock.sendto(data, addresses[d % n])
            except BlockingIOError:
                break
            sent += 1
        readable = select.select([sock], [], [], 0.05)[0]
        now = time.perf_counter()
        if readable:
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
                replies += 1
            last = now
        elif now - last > 0.5:
            replies = sent  # the rest is lost; go on
            last = now
    elapsed = time.perf_counter() - start
    sock.close()
    return elapsed


def run(location, receivers, packets, seconds, server_pids=()):
    """Starts `receivers` processes on `location`, sends, stops them;
    returns (stored/s, receiver CPU µs per reading, server CPU µs per reading, stored)."""
    storage = open_storage(location)
    try:
        before = storage.stats()["stored"]
    finally:
        storage.close()
    procs = [start_receiver(location) for _ in range(receivers)]
    pids = [p.pid for p, _ in procs]
    try:
        server = list(server_pids() if callable(server_pids) else server_pids)
        cpu0, server0 = cpu_seconds(pids), cpu_seconds(server)
        client0 = time.process_time()
        elapsed = blast([a for _, a in procs], packets, seconds)
        client = time.process_time() - client0
        time.sleep(0.3)  # the last batch commits
        cpu1 = cpu_seconds(pids)
        server = list(server_pids() if callable(server_pids) else server_pids)
        server1 = cpu_seconds(server)
    finally:
        for process, _ in procs:
            process.terminate()
        for process, _ in procs:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    storage = open_storage(location)
    try:
        stored = storage.stats()["stored"] - before
    finally:
        storage.close()
    per = max(stored, 1)
    run.client_us = client / per * 1e6  # the load generator's own CPU, printed beside
    return stored / elapsed, (cpu1 - cpu0) / per * 1e6, (server1 - server0) / per * 1e6, stored


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench.storage", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=RUN_SECONDS, help="sending time per configuration (default %(default)s)")
    parser.add_argument("--receivers", default="1,2,4", help="PostgreSQL receiver counts (default %(default)s)")
    args = parser.parse_args(argv)
    from mpseal_tools.bench.receiver import bench_ceiling
    from mpseal_tools.pgcluster import Cluster, pg_bin

    print("storage benchmark (UDP loopback, %d devices, window %d, %.0f s per configuration, %d cores, load average %.1f)"
          % (DEVICES, WINDOW, args.seconds, os.cpu_count(), os.getloadavg()[0]), flush=True)
    _, per_reading, _ = bench_ceiling()
    crypto = crypto_cpu_us()
    print("  crypto ceiling on one core (unseal + seal the ack): %.0f readings/s wall clock; %.0f µs CPU per reading"
          " (%.0f readings per CPU-second)" % (per_reading, crypto, 1e6 / crypto), flush=True)
    print("  (wall-clock rates depend on what else runs here; the CPU µs per reading do not)", flush=True)
    fleet = list(range(1, DEVICES + 1))
    pool = seal_pool(fleet, 1, int(args.seconds * 30_000))
    print("  sealed %d packets for %d devices" % (len(pool), DEVICES), flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mpseal-bench-storage-") as folder:
        if pg_bin() is None:
            print("  PostgreSQL: no server binaries (make system-deps): skipped")
        else:
            cluster = Cluster().start()
            try:
                with open(os.path.join(cluster.data, "postmaster.pid")) as f:
                    postmaster = int(f.readline())
                for n in [int(x) for x in args.receivers.split(",")]:
                    url = cluster.create_database("bench%d" % n)
                    register(url, fleet).close()
                    rate, cpu, server, stored = run(url, n, pool, args.seconds, lambda: children_of(postmaster))
                    results["pg%d" % n] = rate
                    results["pg%d_cpu" % n] = cpu + server
                    print("  PostgreSQL, %d receiver%s: %6.0f stored readings/s  (receivers %.0f µs CPU/reading,"
                          " server %.0f, client %.0f; %d stored; %.0f readings per CPU-second of receivers + server)"
                          % (n, "s" if n > 1 else "", rate, cpu, server, run.client_us, stored, 1e6 / max(cpu + server, 1)),
                          flush=True)
            finally:
                cluster.stop()
        empty = os.path.join(folder, "empty.sqlite")
        register(empty, fleet).close()
        rate, cpu, _, stored = run(empty, 1, pool, args.seconds)
        results["sqlite"] = rate
        print("  SQLite, 1 receiver, empty database: %6.0f stored readings/s  (receiver %.0f µs CPU/reading,"
              " client %.0f; %d stored; %.0f readings per CPU-second)" % (rate, cpu, run.client_us, stored, 1e6 / max(cpu, 1)),
              flush=True)
        aged = os.path.join(folder, "history.sqlite")
        history_fleet = list(range(1, HISTORY_DEVICES + 1))
        started = time.perf_counter()
        storage = register(aged, history_fleet, synchronous="NORMAL")  # building the fixture only
        add_history(storage, history_fleet, HISTORY_READINGS)
        storage.close()
        print("  (history: %d devices x %d readings written in %.0f s)"
              % (HISTORY_DEVICES, HISTORY_READINGS, time.perf_counter() - started), flush=True)
        aged_pool = seal_pool(history_fleet, HISTORY_READINGS + 1, int(args.seconds * 25_000))
        rate, cpu, _, stored = run(aged, 1, aged_pool, args.seconds)
        results["sqlite_history"] = rate
        print("  SQLite, 1 receiver, %d devices x %d readings of history: %6.0f stored readings/s  (receiver %.0f µs"
              " CPU/reading incl. the checkpoint thread; %d new stored; %.0f readings per CPU-second)"
              % (HISTORY_DEVICES, HISTORY_READINGS, rate, cpu, stored, 1e6 / max(cpu, 1)), flush=True)
    if "pg1" in results and "pg2" in results:
        print("  PostgreSQL scaling (stored/s): 2 receivers / 1 = %.2fx%s" % (
            results["pg2"] / results["pg1"],
            "; 4 / 1 = %.2fx" % (results["pg4"] / results["pg1"]) if "pg4" in results else ""))
        print("  CPU per stored reading (receivers + server): 1 receiver %.0f µs, 2: %.0f µs%s -- on an idle machine"
              " N receivers can use N cores, so this cost is what bounds the total" % (
                  results["pg1_cpu"], results["pg2_cpu"],
                  ", 4: %.0f µs" % results["pg4_cpu"] if "pg4_cpu" in results else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
