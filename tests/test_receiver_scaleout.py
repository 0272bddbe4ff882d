"""N receivers sharing one PostgreSQL database (issue 19): real `mpseal
receive` processes on a real PostgreSQL server, the same packets sent to
all of them at once. What must hold whatever the interleaving: every
authentic reading stored exactly once, every replay of an unstored seq
refused, every stored reading acked, a command delivered by one ack only,
and no acked reading lost when a receiver is killed -9 under load."""
import random
import socket
import threading

import pytest

import mpseal
from mpseal import control, payload
from mpseal_host.storage import open_storage
from receiver_helpers import RunningReceiver

pytestmark = pytest.mark.slow

DEVICES = 10
SEQS = 72  # > the 64-seq window, so a skipped seq ends up below it
SKIPPED = (5, 6)  # never sent in phase 1: sending them later is a replay the window must refuse
RETRIES = 2  # resend after a silent timeout (a duplicate over the re-ack budget stays unanswered)


@pytest.fixture
def fleet(pg_cluster):
    url = pg_cluster.create_database()
    storage = open_storage(url)
    devices = [storage.add_device("dev%02d" % i) for i in range(DEVICES)]
    command_id = storage.queue_command(devices[0].name, control.set_interval(120))
    yield url, storage, {d.id: d for d in devices}, command_id
    storage.close()


def packet(device, seq):
    return mpseal.seal(device.master_key, device.id, seq, payload.encode_values({"seq": seq, "dev": device.id}))


def opened_ack(devices, device_id, reply):
    header, body = mpseal.unseal(reply, devices[device_id].master_key, direction=mpseal.TO_DEVICE)
    assert header.type == mpseal.TYPE_ACK
    return control.decode_ack(body)


def exchange(address, items, acks, lock, devices, stop=None, burst=16, timeout=0.3):
    """Sends (device_id, seq, packet) items in bursts (like a fleet: many
    boards in flight at once, each in seq order), waits for their acks,
    resends the unanswered ones (RETRIES rounds, like a board); records
    (device_id, acked seq, reply) for every ack received."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.settimeout(timeout)
    try:
        for start in range(0, len(items), burst):
            if stop is not None and stop.is_set():
                return
            waiting = {(d, s): data for d, s, data in items[start : start + burst]}
            for _ in range(RETRIES):
                try:
                    for data in waiting.values():
                        sock.sendto(data, address)
                    while waiting:
                        reply = sock.recvfrom(4096)[0]
                        device_id = mpseal.parse_header(reply).device_id
                        seq = opened_ack(devices, device_id, reply)[0]
                        with lock:
                            acks.append((device_id, seq, reply))
                        waiting.pop((device_id, seq), None)
                except socket.timeout:
                    continue
                except OSError:  # the receiver died (ICMP port unreachable)
                    return
                break
    finally:
        sock.close()


def interleaved(devices, seqs, rng):
    """Every device's packets in seq order (as a board sends them), devices interleaved at random."""
    queues = {d: [s for s in seqs if s not in SKIPPED] for d in devices}
    items = []
    while queues:
        device_id = rng.choice(sorted(queues))
        seq = queues[device_id].pop(0)
        if not queues[device_id]:
            del queues[device_id]
        items.append((device_id, seq, packet(devices[device_id], seq)))
    return items


def run_all(receivers, orders, acks, lock, devices, stops=None):
    stops = stops or [None] * len(receivers)
    threads = [
        threading.Thread(target=exchange, args=(r.udp, order, acks, lock, devices, stop))
        for r, order, stop in zip(receivers, orders, stops)
    ]
    for t in threads:
        t.start()
    return threads


def stored(storage, devices):
    """{(device id, seq)} of the stored readings; fails if any row is there twice."""
    rows = [(d, r["seq"]) for d, dev in devices.items() for r in storage.readings(dev.name, limit=10000)]
    assert len(rows) == len(set(rows)), "a reading stored twice"
    return set(rows)


def test_three_receivers_store_each_reading_once_and_refuse_replays(fleet):
    url, storage, devices, command_id = fleet
    receivers = [RunningReceiver(url) for _ in range(3)]
    try:
        rng = random.Random(19)
        orders = [interleaved(devices, range(1, SEQS + 1), rng) for _ in receivers]
        acks, lock = [], threading.Lock()
        for t in run_all(receivers, orders, acks, lock, devices):
            t.join(300)

        sent = {(d, s) for d in devices for s in range(1, SEQS + 1) if s not in SKIPPED}
        # stored exactly once: the set matches and the per-device count agrees (no row twice)
        assert stored(storage, devices) == sent
        assert storage.stats()["stored"] == len(sent)
        # every stored reading was acked (by the receiver that stored it, at
        # least), under the device's key; the other copies are duplicates,
        # answered within the re-ack budget (pipeline.ReAckLimiter) or not
        acked = {}
        for device_id, seq, reply in acks:
            acked_seq, commands = opened_ack(devices, device_id, reply)
            assert acked_seq == seq
            acked.setdefault((device_id, seq), []).append(commands)
        assert set(acked) == sent
        # the command rode on the ack of exactly one reading (re-acks of that seq repeat it)
        carrying = {key for key, lists in acked.items() if [control.set_interval(120)] in lists}
        assert len(carrying) == 1
        (device_id, seq), = carrying
        sent_rows = [c for c in storage.list_commands(device_id) if c[0] == command_id]
        assert len(sent_rows) == 1 and sent_rows[0][5] == seq

        # replays: a stored packet again is a duplicate (acked, not stored);
        # an authentic seq below the window that was never stored is refused
        duplicates = storage.stats()["duplicates"]
        for receiver in receivers:
            for device_id in list(devices)[:3]:
                reply = receiver.udp_exchange(packet(devices[device_id], SEQS), timeout=0.5)
                assert reply is None or opened_ack(devices, device_id, reply)[0] == SEQS
                for seq in SKIPPED:
                    assert receiver.udp_exchange(packet(devices[device_id], seq), timeout=0.5) is None
        assert stored(storage, devices) == sent
        totals = storage.stats()
        assert totals["duplicates"] == duplicates + 3 * 3
        assert totals["rejected_by_reason"].get("too_old") == 3 * 3 * len(SKIPPED)
        assert totals["duplicates"] >= 2 * len(sent)
    finally:
        for r in receivers:
            r.stop()


def test_kill_9_of_one_receiver_under_load_loses_no_acked_reading(fleet):
    url, storage, devices, _ = fleet
    receivers = [RunningReceiver(url) for _ in range(3)]
    try:
        rng = random.Random(9)
        orders = [interleaved(devices, range(1, SEQS + 1), rng) for _ in receivers]
        acks, lock = [], threading.Lock()
        stops = [threading.Event() for _ in receivers]
        threads = run_all(receivers, orders, acks, lock, devices, stops)
        # kill one receiver once it has acked a good part of its share
        from conftest import wait_until

        wait_until(lambda: len(acks) > len(orders[0]), timeout=120, what="load under way")
        receivers[1].proc.kill()
        stops[1].set()  # its client gives up on it (UDP reports no error)
        for t in threads:
            t.join(300)
        have = stored(storage, devices)
        acked = {(d, s) for d, s, _ in acks}
        assert acked and acked <= have, "acked but not stored: %s" % sorted(acked - have)[:10]
        assert storage.stats()["stored"] == len(have)  # and nothing stored twice
    finally:
        for r in receivers:
            r.stop()


def test_receivers_share_one_udp_port_with_reuse_port(fleet):
    url, storage, devices, _ = fleet
    first = RunningReceiver(url, extra_args=["--reuse-port"])
    others = []
    try:
        udp = "%s:%d" % first.udp
        others = [RunningReceiver(url, udp=udp, extra_args=["--reuse-port"]) for _ in range(2)]
        assert all(o.udp == first.udp for o in others)
        device = devices[min(devices)]
        # many client sockets: the kernel spreads them over the three; every one is acked
        for seq in range(1, 31):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(3)
            sock.sendto(packet(device, seq), first.udp)
            assert opened_ack(devices, device.id, sock.recvfrom(4096)[0])[0] == seq
            sock.close()
        assert len(storage.readings(device.name, limit=100)) == 30
    finally:
        for r in [first] + others:
            r.stop()
