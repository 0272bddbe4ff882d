"""Prometheus exposition of the receiver (`GET /metrics`), in the style of
existing exporters: a `mpseal_` prefix, `_total` counters, `_seconds` and
`_timestamp_seconds` units, one label set per device.

Per device: last value of every numeric field (`mpseal_device_value`, with
`field` and `unit` labels), last seen, last seq, status from its own interval,
packets received / stored / duplicates, rejections by reason. Receiver health:
this process's counters, start time, and the MQTT publisher's state when
`--mqtt` is on. Counters of the top level live in the database (all
processes, all time), like `/api/stats`. Built with prometheus-client's
exposition writer (escaping of label values is its job), on a registry of our
own so nothing else in the process leaks in.
"""

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from mpseal_host.integrations.channels import numeric_fields, unit
from mpseal_host.integrations.fleet import OK, STATUSES

# The classic text format every Prometheus 2.x scrapes (the 1.0.0 one is newer).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class ReceiverCollector:
    def __init__(self, receiver):
        self.receiver = receiver

    def collect(self):
        receiver = self.receiver
        devices = receiver.fleet.devices()
        stats = receiver.stats()

        value = GaugeMetricFamily("mpseal_device_value", "Last value a device sent, per field (unit label: see docs/protocol.md)", labels=["device", "field", "unit"])
        last_seen = GaugeMetricFamily("mpseal_device_last_seen_timestamp_seconds", "Unix time of the device's last authentic packet", labels=["device"])
        measured = GaugeMetricFamily("mpseal_device_last_measured_timestamp_seconds", "Unix time the last reading was measured (arrival when the board sends no age)", labels=["device"])
        last_seq = GaugeMetricFamily("mpseal_device_last_seq", "Highest device sequence number stored", labels=["device"])
        up = GaugeMetricFamily("mpseal_device_up", "1 while the device reports within its own interval (status ok)", labels=["device"])
        state = GaugeMetricFamily("mpseal_device_status", "1 for the device's current status (ok, late, silent, never)", labels=["device", "status"])
        interval = GaugeMetricFamily("mpseal_device_expected_interval_seconds", "Reporting interval the status is computed from", labels=["device", "source"])
        info = GaugeMetricFamily("mpseal_device_info", "Device id, key epoch, last transport and synthetic-sensor marker", labels=["device", "id", "epoch", "transport", "synthetic"])
        received = CounterMetricFamily("mpseal_device_packets_received", "Packets whose header named the device", labels=["device"])
        stored = CounterMetricFamily("mpseal_device_readings_stored", "Readings stored", labels=["device"])
        duplicates = CounterMetricFamily("mpseal_device_duplicates", "Authentic retransmissions acked again and stored once", labels=["device"])
        for d in devices:
            name = d["name"]
            latest = d["latest"]
            if latest is not None:
                for field, v in numeric_fields(latest["value"]).items():
                    if isinstance(v, int) and abs(v) > 2**53:
                        v = float(v)
                    value.add_metric([name, field, unit(field) or ""], float(v))
                measured.add_metric([name], latest["measured_at"])
            if d["last_seen"] is not None:
                last_seen.add_metric([name], d["last_seen"])
            last_seq.add_metric([name], d["last_seq"])
            up.add_metric([name], 1.0 if d["status"] == OK else 0.0)
            for s in STATUSES:
                state.add_metric([name, s], 1.0 if d["status"] == s else 0.0)
            interval.add_metric([name, d["interval_source"]], d["interval_s"])
            info.add_metric([name, str(d["id"]), str(d["epoch"]), d["last_transport"] or "", "1" if d["synthetic"] else "0"], 1.0)
            received.add_metric([name], d["received"])
            stored.add_metric([name], d["stored"])
            duplicates.add_metric([name], d["duplicates"])
        yield from (value, last_seen, measured, last_seq, up, state, interval, info, received, stored, duplicates)

        rejected = CounterMetricFamily("mpseal_rejected_packets", "Refused packets by device ('(unregistered)': none named) and reason", labels=["device", "reason"])
        for device, reasons in sorted(stats["rejected_by_device"].items()):
            for reason, count in sorted(reasons.items()):
                rejected.add_metric([device, reason], count)
        yield rejected
        yield GaugeMetricFamily("mpseal_devices", "Registered devices", value=stats["devices"])

        counters = stats["receiver"]
        for key, help_text in (
            ("udp_datagrams", "UDP datagrams received by this process"),
            ("http_requests", "HTTP ingest requests received by this process"),
            ("batches", "Ingest transactions committed or failed by this process"),
            ("acks_sent", "UDP acks sent by this process"),
            ("acks_dropped", "UDP acks the socket refused (the device retransmits)"),
        ):
            yield CounterMetricFamily("mpseal_receiver_" + key, help_text, value=counters[key])
        yield GaugeMetricFamily("mpseal_receiver_start_time_seconds", "Unix time this receiver process started", value=receiver.started_at)
        mqtt = getattr(receiver, "mqtt", None)
        if mqtt is not None:
            m = mqtt.stats()
            yield GaugeMetricFamily("mpseal_mqtt_connected", "1 while connected to the MQTT broker", value=1.0 if m["connected"] else 0.0)
            yield GaugeMetricFamily("mpseal_mqtt_queue_messages", "MQTT messages waiting for the broker (bounded, newest per topic)", value=m["queued"])
            yield CounterMetricFamily("mpseal_mqtt_messages_published", "MQTT messages handed to the broker", value=m["published"])
            yield CounterMetricFamily("mpseal_mqtt_messages_dropped", "MQTT messages dropped from a full queue (republished from the database on reconnect)", value=m["dropped"])
            yield CounterMetricFamily("mpseal_mqtt_connects", "Successful connections to the MQTT broker", value=m["connects"])


def registry_for(receiver):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReceiverCollector(receiver))
    return registry


def render(registry):
    """The exposition text (bytes) of a registry made by registry_for()."""
    return generate_latest(registry)
