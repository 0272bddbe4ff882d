"""The I/O-free parts of the integrations: interval estimate and status,
NaN-safe JSON, time parsing, HA discovery/state messages, the MQTT queue
(bounded, newest per topic, resync after a drop) and its settings."""
import asyncio
import json

import pytest

from mpseal_host.integrations import fleet, ha_discovery, jsonsafe, timerange
from mpseal_host.integrations.mqtt import MqttConfigError, MqttPublisher, MqttSettings
from mpseal_host.pipeline import Outcome


def test_interval_is_the_median_gap_per_seq_and_ignores_a_backlog_burst():
    regular = [(seq, 1000.0 + 60 * seq) for seq in range(20, 0, -1)]
    assert fleet.estimate_interval(regular) == 60.0
    # seqs 11..20 were queued during an outage and arrived within a second
    burst = [(seq, 2000.0 + 0.05 * seq) for seq in range(20, 10, -1)] + [(seq, 1000.0 + 60 * seq) for seq in range(10, 0, -1)]
    assert fleet.estimate_interval(burst) == 60.0
    # lost readings (seq gaps) do not make the interval look longer
    assert fleet.estimate_interval([(10, 1600.0), (5, 1300.0), (4, 1240.0)]) == 60.0
    assert fleet.estimate_interval([(1, 5.0)]) is None
    assert fleet.estimate_interval([(3, 5.0), (2, 5.0), (1, 5.0)]) == fleet.MIN_INTERVAL_S


def test_status_follows_the_devices_own_interval():
    assert fleet.status(None, 60, 1000) == fleet.NEVER
    assert fleet.status(1000 - 129, 60, 1000) == fleet.OK  # 2 intervals + 10 s
    assert fleet.status(1000 - 131, 60, 1000) == fleet.LATE
    assert fleet.status(1000 - 311, 60, 1000) == fleet.SILENT
    assert fleet.status(1000 - 311, 3600, 1000) == fleet.OK  # same age, hourly device


def test_json_is_always_valid():
    text = jsonsafe.dumps({"a": [float("nan"), {"b": float("-inf")}], "c": float("inf"), "d": 1.5})
    assert json.loads(text, parse_constant=lambda c: pytest.fail("bare " + c)) == {
        "a": ["NaN", {"b": "-Infinity"}], "c": "Infinity", "d": 1.5}


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T08:00:00Z", 1796112000.0), ("2026-12-01T09:00:00+01:00", 1796112000.0),
    ("2026-12-01 08:00:00", 1796112000.0), ("2026-12-01", 1796083200.0), ("1796112000.5", 1796112000.5),
])
def test_times_are_iso_8601_or_epoch(text, expected):
    assert timerange.parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "nan", "inf", "-5", "2026-13-01"])
def test_bad_times_are_refused_with_a_reason(text):
    with pytest.raises(timerange.BadTime):
        timerange.parse_time(text)


def test_measured_at_uses_the_age_channel_only_when_it_is_sane():
    r = {"received_at": 1000.0, "value": {"temperature": 1, "age": 30}}
    assert timerange.measured(r) == (970.0, "age")
    for value in ({"age": -1}, {"age": float("nan")}, {"age": True}, {"age": "30"}, "raw", None):
        assert timerange.measured({"received_at": 1000.0, "value": value}) == (1000.0, "arrival")


def test_discovery_names_only_plain_numeric_fields_and_state_has_no_nan():
    topics = ha_discovery.Topics()
    value = {"temperature": 21.5, "weird name": 1, "text": "x", "flag": True, "synthetic": 1, "co2": 400}
    fields = ha_discovery.announced_fields(value)
    assert fields == ["co2", "temperature"]
    config = ha_discovery.discovery_payload(7, "shed", fields, topics)
    assert set(config["cmps"]) == {"mpseal_7_co2", "mpseal_7_temperature", "mpseal_7_last_seen"}
    assert config["cmps"]["mpseal_7_co2"]["dev_cla"] == "carbon_dioxide"
    assert topics.discovery(7) == "homeassistant/device/mpseal_7/config"
    state = ha_discovery.state_payload(timerange.with_measured_at(
        {"seq": 3, "received_at": 1796112000.0, "transport": "udp", "value": {"t": float("nan"), "n": {"x": 1}}}))
    assert state["values"] == {"t": None, "n": None} and state["received_at"] == "2026-12-01T08:00:00.000+00:00"
    assert json.loads(ha_discovery.encode(state))["seq"] == 3


class FakeFleet:
    """Stands in for fleet.Fleet (storage) in the queue tests: no database here."""

    def __init__(self, views=()):
        self.views = list(views)

    def devices(self):
        return self.views


def publisher(limit=100):
    async def make():
        return MqttPublisher(None, FakeFleet(), MqttSettings("127.0.0.1"), queue_limit=limit)

    return asyncio.run(make())


def stored(device_id, name, seq, value):
    outcome = Outcome("stored", "udp", device=name, device_id=device_id, seq=seq)
    outcome.value = value
    return (outcome, b"ack")


def test_queue_keeps_the_newest_state_per_topic_and_announces_new_fields():
    pub = publisher()
    pub.notify([stored(1, "a", 1, {"temperature": 1.0}), stored(1, "a", 2, {"temperature": 2.0})], now=100.0)
    pub._drain_dirty()
    pub.notify([stored(1, "a", 3, {"temperature": 3.0, "humidity": 50.0})], now=101.0)
    pub._drain_dirty()
    topics = list(pub.pending)
    assert topics.count("mpseal/a/state") == 1 and json.loads(pub.pending["mpseal/a/state"][0])["seq"] == 3
    discovery = json.loads(pub.pending["homeassistant/device/mpseal_1/config"][0])
    assert set(discovery["cmps"]) == {"mpseal_1_temperature", "mpseal_1_humidity", "mpseal_1_last_seen"}
    assert pub.pending["mpseal/a/availability"][0] == b"online"
    pub.notify([stored(1, "a", 2, {"temperature": 9.0})], now=102.0)  # an older seq (late duplicate path)
    pub._drain_dirty()
    assert json.loads(pub.pending["mpseal/a/state"][0])["seq"] == 3


def test_a_full_queue_drops_the_oldest_counts_it_and_asks_for_a_resync():
    pub = publisher(limit=5)
    pub.need_resync = False
    for i in range(1, 5):
        pub.notify([stored(i, "d%d" % i, 1, {"temperature": float(i)})], now=100.0)
    assert not pub.pending  # notify only notes; the sending task builds the messages
    pub._drain_dirty()
    assert len(pub.pending) == 5 and pub.counters["dropped"] > 0 and pub.need_resync


def test_mqtt_settings_never_take_a_password_from_the_command_line(tmp_path):
    with pytest.raises(MqttConfigError, match="not in the URL"):
        MqttSettings.from_url("mqtt://u:secret@host", environ={})
    with pytest.raises(MqttConfigError, match="mqtt://HOST"):
        MqttSettings.from_url("http://host", environ={})
    with pytest.raises(MqttConfigError, match="needs a username"):
        MqttSettings.from_url("mqtt://host", environ={"MPSEAL_MQTT_PASSWORD": "pw"})
    s = MqttSettings.from_url("mqtts://u@host", environ={"MPSEAL_MQTT_PASSWORD": "pw"})
    assert (s.host, s.port, s.tls, s.username, s.password) == ("host", 8883, True, "u", "pw")
    assert "pw" not in repr(s)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s = MqttSettings.from_url("mqtt://host:1884", username="v", password_file=str(secret), environ={})
    assert (s.port, s.username, s.password) == (1884, "v", "from-file")
    with pytest.raises(MqttConfigError, match="password file"):
        MqttSettings.from_url("mqtt://u@host", password_file=str(tmp_path / "missing"), environ={})
