"""Receiver benchmark: `python -m mpseal_tools.bench.receiver` (part of `make bench`).

Prints, all measured in this run:
  * stored readings/s of a real `mpseal receive` subprocess, many simulated
    devices sending over UDP on loopback, at most WINDOW packets in flight
    (the offered rate follows the acks; lost datagrams are retransmitted);
  * loss: acknowledged but not in the database (must be 0), and not stored;
  * ack latency p50/p99 (send -> ack received, client clock);
  * the raw verify+decrypt ceiling on one core: mpseal.unseal with cached keys
    (what the receiver runs), the crypto a stored reading costs (unseal + the
    sealed ack), and a naive pycryptodome unseal that builds an AES object per
    packet (the ~47k/s reference figure);
  * a seed-style baseline receiver: Fernet token + hex HMAC-SHA256 in JSON,
    one SQLite commit per message, "OK" reply, same client.
Every loop is bounded by a packet count and a deadline; the run takes ~40 s.
"""
import argparse
import hashlib
import hmac
import json
import os
import select
import socket
import sqlite3  # the seed-style baseline only: a naive receiver, not mpseal's storage
import subprocess
import sys
import tempfile
import time

import mpseal
from mpseal import payload as payload_codec
from mpseal.control import decode_ack, encode_ack
from mpseal.packet import TYPE_ACK
from mpseal_host.storage import Storage, open_storage

DEVICES = 200
WINDOW = 2048  # packets in flight (~10 per device); below the receiver's socket buffer
RUN_SECONDS = 12.0
MAX_PACKETS = 400_000
BASELINE_SECONDS = 5.0
CEILING_PACKETS = 30_000
QUIET_PACKETS = 1000  # sent one at a time first, for the unloaded ack latency
RETRANSMIT_AFTER = 0.5  # seconds without an ack before a packet is sent again
READING = {"temperature": 21.37, "humidity": 48.2, "battery": 3.912}


def _percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


class AckOpener:
    """Verifies and opens host->device acks (derived keys cached, so the
    client is not the bottleneck): returns the acked device seq."""

    def __init__(self, master_key):
        self.keys = mpseal.DeviceKeys(master_key)

    def acked_seq(self, packet):
        try:
            return decode_ack(mpseal.unseal(packet, self.keys, direction=mpseal.TO_DEVICE)[1])[0]
        except mpseal.InvalidPacket as exc:
            raise ValueError("ack does not verify: %s" % exc.reason)


class Client:
    """Sends pre-built packets with a bounded window, matches replies to packets."""

    def __init__(self, address, packets, match, window=WINDOW):
        self.window = window
        self.address = address
        self.packets = packets  # list of bytes
        self.match = match  # reply bytes -> packet index, or None
        self.sent_at = {}
        self.first_sent = {}
        self.latencies = []
        self.acked = set()
        self.retransmissions = 0

    def run(self, seconds):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        total = len(self.packets)
        next_index = 0
        start = time.perf_counter()
        deadline = start + seconds
        last_progress = start
        while len(self.acked) < total and time.perf_counter() < deadline:
            now = time.perf_counter()
            while len(self.sent_at) < self.window and next_index < total:
                sock.sendto(self.packets[next_index], self.address)
                self.sent_at[next_index] = self.first_sent[next_index] = time.perf_counter()
                next_index += 1
            if now - last_progress > RETRANSMIT_AFTER and self.sent_at:
                for index in sorted(self.sent_at)[: max(1, self.window // 4)]:
                    sock.sendto(self.packets[index], self.address)
                    self.retransmissions += 1
                last_progress = now
            readable, _, _ = select.select([sock], [], [], 0.05)
            if not readable:
                continue
            for _ in range(self.window):
                try:
                    reply = sock.recv(2048)
                except BlockingIOError:
                    break
                index = self.match(reply)
                if index is None or index in self.acked:
                    continue
                received = time.perf_counter()
                self.acked.add(index)
                self.latencies.append(received - self.first_sent[index])
                self.sent_at.pop(index, None)
                last_progress = received
        elapsed = time.perf_counter() - start
        sock.close()
        return elapsed, next_index


def _wait_for_line(process, marker, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if marker in line:
            return line
    raise RuntimeError("receiver did not start (no %r line)" % marker)


def bench_receiver(folder, seconds):
    db = os.path.join(folder, "bench.sqlite")
    storage = Storage(db)
    devices = [storage.add_device("bench-%03d" % i) for i in range(DEVICES)]
    storage.close()
    payload = payload_codec.encode_values(READING)
    keys = [mpseal.DeviceKeys(d.master_key) for d in devices]
    openers = {d.id: AckOpener(d.master_key) for d in devices}
    count = MAX_PACKETS
    print("  sealing %d packets for %d devices ..." % (count, DEVICES), flush=True)
    started = time.perf_counter()
    packets = []
    index_of = {}
    for i in range(count):
        d = i % DEVICES
        seq = i // DEVICES + 1
        packets.append(mpseal.seal(keys[d], devices[d].id, seq, payload))
        index_of[(devices[d].id, seq)] = i
        if time.perf_counter() - started > 25:  # slow machine: bench what is sealed so far
            break
    def match(reply):
        try:
            header = mpseal.parse_header(reply)
            if header.type != TYPE_ACK:
                return None
            return index_of.get((header.device_id, openers[header.device_id].acked_seq(reply)))
        except (mpseal.InvalidPacket, KeyError, ValueError):
            return None

    process = subprocess.Popen(
        [sys.executable, "-m", "mpseal_tools.cli", "receive", "--db", db, "--udp", "127.0.0.1:0", "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = _wait_for_line(process, "listening on udp")
        host, port = line.split("udp ")[1].split(",")[0].strip().rsplit(":", 1)
        # Unloaded first: one packet in flight, what a single device sees.
        quiet = Client((host, int(port)), packets[:QUIET_PACKETS], match, window=1)
        quiet.run(10.0)
        def match_loaded(reply):
            index = match(reply)
            return None if index is None or index < QUIET_PACKETS else index - QUIET_PACKETS

        client = Client((host, int(port)), packets[QUIET_PACKETS:], match_loaded)
        print("  sending for up to %.0f s ..." % seconds, flush=True)
        elapsed, sent = client.run(seconds)
        sent += QUIET_PACKETS
    finally:
        process.terminate()
        process.wait(timeout=30)
    check = open_storage(db)
    stored = {(d.id, r["seq"]) for d in devices for r in check.readings(d.id, limit=MAX_PACKETS)}
    check.close()
    acked_keys = set()
    for index in list(quiet.acked) + [i + QUIET_PACKETS for i in client.acked]:
        acked_keys.add((devices[index % DEVICES].id, index // DEVICES + 1))
    return {
        "rate": len(client.acked) / elapsed,
        "acked": len(client.acked),
        "sent": sent,
        "stored": len(stored),
        "acked_not_stored": len(acked_keys - stored),
        "sent_not_stored": sent - len(stored & {(devices[i % DEVICES].id, i // DEVICES + 1) for i in range(sent)}),
        "retransmissions": client.retransmissions,
        "p50_ms": _percentile(client.latencies, 50) * 1000,
        "p99_ms": _percentile(client.latencies, 99) * 1000,
        "quiet_p50_ms": _percentile(quiet.latencies, 50) * 1000,
        "quiet_p99_ms": _percentile(quiet.latencies, 99) * 1000,
        "elapsed": elapsed,
    }


def bench_ceiling():
    master = os.urandom(32)
    payload = payload_codec.encode_values(READING)
    keys = mpseal.DeviceKeys(master)
    packets = [mpseal.seal(keys, 1, i + 1, payload) for i in range(CEILING_PACKETS)]
    start = time.perf_counter()
    for p in packets:
        mpseal.unseal(p, keys)
    ceiling = CEILING_PACKETS / (time.perf_counter() - start)
    # the crypto one stored reading costs: open it, seal its ack
    start = time.perf_counter()
    for seq, p in enumerate(packets, start=1):
        mpseal.unseal(p, keys)
        mpseal.seal(keys, 1, seq, encode_ack(seq), type=TYPE_ACK)
    per_reading = CEILING_PACKETS / (time.perf_counter() - start)
    return ceiling, per_reading, naive_unseal_rate(master, packets[: CEILING_PACKETS // 3])


def naive_unseal_rate(master, packets):
    """The straightforward pycryptodome opening (HMAC check, then a new AES-CBC
    object per packet) that the ~47,000/s reference figure measures."""
    from Crypto.Cipher import AES

    d = mpseal.DeviceKeys(master).directions[mpseal.TO_HOST]
    start = time.perf_counter()
    for p in packets:
        if hmac.compare_digest(hmac.new(d.mac_key, p[:-16], hashlib.sha256).digest()[:16], p[-16:]):
            AES.new(d.enc_key, AES.MODE_CBC, p[11:27]).decrypt(p[27:-16])
    return len(packets) / (time.perf_counter() - start)


# --- seed-style baseline ----------------------------------------------------


def baseline_server(port_file, db, fernet_key, mac_key):
    """What the seeds did, made a little honest: a JSON envelope with a Fernet
    token and a hex HMAC, one INSERT + commit per message, reply b'OK'."""
    from cryptography.fernet import Fernet

    fernet = Fernet(fernet_key)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS readings (device TEXT, seq INTEGER, body TEXT, at REAL)")
    conn.commit()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    with open(port_file, "w") as f:
        f.write(str(sock.getsockname()[1]))
    while True:
        data, address = sock.recvfrom(4096)
        try:
            message = json.loads(data)
            token = message["token"].encode()
            expected = hmac.new(mac_key, token, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, message["mac"]):
                continue
            body = json.loads(fernet.decrypt(token))
        except (ValueError, KeyError):
            continue
        conn.execute("INSERT INTO readings VALUES (?, ?, ?, ?)", (body["device"], body["seq"], json.dumps(body), time.time()))
        conn.commit()
        sock.sendto(b"OK %s %d" % (body["device"].encode(), body["seq"]), address)


def bench_baseline(folder, seconds):
    from cryptography.fernet import Fernet

    fernet_key = Fernet.generate_key()
    mac_key = os.urandom(32)
    fernet = Fernet(fernet_key)
    packets = []
    index_of = {}
    for i in range(100_000):
        body = dict(READING, device="bench-%03d" % (i % DEVICES), seq=i // DEVICES + 1)
        token = fernet.encrypt(json.dumps(body).encode())
        mac = hmac.new(mac_key, token, hashlib.sha256).hexdigest()
        packets.append(json.dumps({"token": token.decode(), "mac": mac}).encode())
        index_of[b"OK %s %d" % (body["device"].encode(), body["seq"])] = i
        if i >= seconds * 8000:  # far more than the baseline can take in `seconds`
            break
    port_file = os.path.join(folder, "baseline.port")
    process = subprocess.Popen(
        [sys.executable, "-m", "mpseal_tools.bench.receiver", "--baseline-server", port_file,
         os.path.join(folder, "baseline.sqlite"), fernet_key.decode(), mac_key.hex()],
    )
    try:
        deadline = time.time() + 20
        while not os.path.exists(port_file) or not open(port_file).read():
            if time.time() > deadline:
                raise RuntimeError("baseline receiver did not start")
            time.sleep(0.05)
        client = Client(("127.0.0.1", int(open(port_file).read())), packets, index_of.get)
        elapsed, _ = client.run(seconds)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return len(client.acked) / elapsed, _percentile(client.latencies, 50) * 1000, _percentile(client.latencies, 99) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.bench.receiver", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=RUN_SECONDS, help="UDP run length (default %(default)s)")
    parser.add_argument("--baseline-server", nargs=4, metavar=("PORT_FILE", "DB", "FERNET_KEY", "MAC_HEX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        port_file, db, fernet_key, mac_hex = args.baseline_server
        try:
            baseline_server(port_file, db, fernet_key.encode(), bytes.fromhex(mac_hex))
        except KeyboardInterrupt:
            pass
        return 0
    print("receiver benchmark (UDP loopback, %d devices, window %d)" % (DEVICES, WINDOW), flush=True)
    ceiling, per_reading, naive = bench_ceiling()
    print("  ceiling on one core: verify+decrypt (mpseal.unseal) %.0f/s; verify+decrypt+seal ack %.0f/s;"
          " naive pycryptodome verify+decrypt %.0f/s" % (ceiling, per_reading, naive))
    with tempfile.TemporaryDirectory(prefix="mpseal-bench-") as folder:
        r = bench_receiver(folder, args.seconds)
        print("  mpseal receive: %.0f stored readings/s (%d acked in %.1f s, %d retransmissions)" % (
            r["rate"], r["acked"], r["elapsed"], r["retransmissions"]))
        print("    = %.0f%% of the verify+decrypt ceiling, %.0f%% of verify+decrypt+ack, %.0f%% of the naive ceiling" % (
            100 * r["rate"] / ceiling, 100 * r["rate"] / per_reading, 100 * r["rate"] / naive))
        print("  loss: %d acked but not stored (must be 0); %d sent, %d stored, %d sent but not stored at the end" % (
            r["acked_not_stored"], r["sent"], r["stored"], r["sent_not_stored"]))
        print("  ack latency at full load (%d in flight): p50 %.2f ms, p99 %.2f ms" % (WINDOW, r["p50_ms"], r["p99_ms"]))
        print("  ack latency unloaded (1 in flight): p50 %.2f ms, p99 %.2f ms" % (r["quiet_p50_ms"], r["quiet_p99_ms"]))
        rate, p50, p99 = bench_baseline(folder, BASELINE_SECONDS)
        print("  seed-style baseline (Fernet + hex HMAC, commit per message): %.0f readings/s, ack p50 %.2f ms, p99 %.2f ms" % (rate, p50, p99))
        print("    mpseal receive is %.1fx the baseline" % (r["rate"] / rate if rate else float("inf")))
    return 1 if r["acked_not_stored"] else 0


if __name__ == "__main__":
    sys.exit(main())
