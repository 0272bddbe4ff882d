"""`make bench` section: what the integrations cost a read worker of the
receiver, in-process on a fresh SQLite file (no HTTP, no broker): the fleet
status, `/metrics`, `/api/dashboard` and the MQTT queue per batch, for 60
and 1,000 devices with an hour of readings each (one a minute), and export
throughput. The receiver runs them in its read pool (worker processes), so
they are what a page refresh or a scrape costs a read worker, not the ingest
loop."""
import os
import tempfile
import time

import mpseal
from mpseal import payload
from mpseal_host.ingest import Ingestor
from mpseal_host.integrations import export, metrics, routes
from mpseal_host.integrations.mqtt import MqttPublisher, MqttSettings
from mpseal_host.storage import Storage

READINGS_PER_DEVICE = 60


def fill(path, devices):
    storage = Storage(path, synchronous="NORMAL")
    ingestor = Ingestor(storage)
    now = time.time()
    registered = [storage.add_device("node-%04d" % i) for i in range(devices)]
    for minute in range(READINGS_PER_DEVICE):
        batch = []
        for i, device in enumerate(registered):
            values = {"temperature": 20 + i / 100 + minute / 10, "humidity": 40.0 + minute % 7, "battery": 3.7, "rssi": -60}
            batch.append((mpseal.seal(device.master_key, device.id, minute + 1, payload.encode_values(values)), "udp"))
        ingestor.ingest(batch, now=now - 60 * (READINGS_PER_DEVICE - minute))
    return storage


def ms(fn, repeat=5):
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        elapsed = (time.perf_counter() - start) * 1000
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def measure(devices, folder):
    storage = fill(os.path.join(folder, "bench-%d.sqlite" % devices), devices)
    # what a read worker builds per /metrics or /api/dashboard request
    receiver = routes.StorageView(storage, dict.fromkeys(
        ("udp_datagrams", "http_requests", "batches", "acks_sent", "acks_dropped"), 0), started_at=time.time())
    fleet_ms, _ = ms(lambda: receiver.fleet.devices())
    registry = metrics.registry_for(receiver)
    metrics_ms, body = ms(lambda: metrics.render(registry))
    dash_ms, data = ms(lambda: routes.jsonsafe.dumps(routes.dashboard_data(receiver, "1h")), repeat=3)
    publisher = MqttPublisher(storage, receiver.fleet, MqttSettings("127.0.0.1"))
    publisher.notify(ingest_outcomes(storage, devices, 1), time.time())
    publisher._drain_dirty()  # first: discovery for every device
    results = ingest_outcomes(storage, devices, 2)
    start = time.perf_counter()
    publisher.notify(results, time.time())  # on the ingest path
    notify_us = (time.perf_counter() - start) * 1e6 / len(results)
    start = time.perf_counter()
    publisher._drain_dirty()  # in the sending task: one state message per device
    build_us = (time.perf_counter() - start) * 1e6 / len(results)
    sync_ms, _ = ms(lambda: publisher.sync(full=True), repeat=3)
    storage.close()
    return {"devices": devices, "fleet_ms": fleet_ms, "metrics_ms": metrics_ms, "metrics_kb": len(body) / 1024,
            "dashboard_ms": dash_ms, "dashboard_kb": len(data) / 1024, "notify_us_per_reading": notify_us,
            "build_us_per_device": build_us,
            "full_sync_ms": sync_ms, "topics_queued": len(publisher.pending)}


def ingest_outcomes(storage, devices, n):
    """One batch with the n-th new reading from every device (the outcomes notify() gets)."""
    ingestor = Ingestor(storage)
    items = []
    for device in storage.list_devices()[:devices]:
        values = {"temperature": 21.0, "humidity": 40.0, "battery": 3.7}
        items.append((mpseal.seal(device.master_key, device.id, READINGS_PER_DEVICE + n, payload.encode_values(values)), "udp"))
    return ingestor.ingest(items)


def export_rate(folder):
    storage = Storage(os.path.join(folder, "bench-1000.sqlite"))
    start = time.perf_counter()
    rows = 0
    for device in storage.list_devices()[:200]:
        for chunk in export.csv_chunks(storage, device.name):
            rows += chunk.count("\n")
    elapsed = time.perf_counter() - start
    storage.close()
    return rows / elapsed


def main():
    print("== integrations (in-process, SQLite; the read-worker time each costs) ==", flush=True)
    print("load average %.1f on %d cores (numbers scale with it)" % (os.getloadavg()[0], os.cpu_count()), flush=True)
    with tempfile.TemporaryDirectory(prefix="mpseal-bench-") as folder:
        for devices in (60, 1000):
            r = measure(devices, folder)
            print("%5d devices x %d readings: fleet status %.1f ms, /metrics %.1f ms (%.0f KiB), "
                  "/api/dashboard 1h %.1f ms (%.0f KiB)" % (devices, READINGS_PER_DEVICE, r["fleet_ms"], r["metrics_ms"],
                                                           r["metrics_kb"], r["dashboard_ms"], r["dashboard_kb"]), flush=True)
            print("       MQTT: notify %.1f us per stored reading (ingest path), state message %.1f us per device "
                  "(sending task), full resync %.1f ms (%d topics)"
                  % (r["notify_us_per_reading"], r["build_us_per_device"], r["full_sync_ms"], r["topics_queued"]), flush=True)
        print("export: %.0f CSV rows/s (200 devices, two passes each)" % export_rate(folder), flush=True)


if __name__ == "__main__":
    main()
