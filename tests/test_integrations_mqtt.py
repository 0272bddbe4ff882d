"""`mpseal receive --mqtt`: the real firmware (unix port) sends readings to a
real receiver, which publishes them to a real mosquitto as Home
Assistant-discoverable entities; a subscriber checks what HA would get.
Then a 30 s broker outage: acks keep flowing (latency measured and kept as
an artefact, not asserted) and the last value is republished afterwards.
Simulated, because it cannot exist here: the radio (loopback) and the flash
chip (a folder), as in test_firmware_e2e.py; there is no Home Assistant, so
the discovery payload is checked against HA's documented keys below."""
import json
import os
import re
import socket
import statistics
import subprocess
import time

import pytest

import mpseal
from conftest import wait_until
from mpseal import payload
from mpseal_tools.receiver_proc import ReceiverProcess
from mpseal_tools.sim import unix_board
from mqtt_helpers import Mosquitto, Subscriber, make_tls_files, wait_for_topic

pytestmark = pytest.mark.slow
DEVICE, DEVICE_ID = "dev", 5
PROBE, PROBE_ID = "probe", 6
OUTAGE_S = 30.0
DISCOVERY = "homeassistant/device/mpseal_%d/config"

# Home Assistant's MQTT device discovery schema (home-assistant.io
# integrations/mqtt "Device discovery payload", abbreviations from HA core's
# mqtt/abbreviations.py), and the MQTT sensor's options and the units HA
# accepts per sensor device class (integrations/sensor "Device class").
HA_DEVICE_KEYS = {"ids", "identifiers", "cns", "connections", "name", "mf", "manufacturer", "mdl", "model",
                  "mdl_id", "model_id", "sw", "sw_version", "hw", "hw_version", "sn", "serial_number",
                  "sa", "suggested_area", "cu", "configuration_url", "via_device"}
HA_ORIGIN_KEYS = {"name", "sw", "sw_version", "url", "support_url"}
HA_ROOT_KEYS = {"dev", "device", "o", "origin", "cmps", "components", "stat_t", "state_topic", "avty",
                "availability", "avty_mode", "availability_mode", "avty_t", "availability_topic", "qos", "~",
                "enc", "encoding", "json_attr_t", "json_attributes_topic"}
HA_SENSOR_KEYS = {"p", "platform", "name", "uniq_id", "unique_id", "val_tpl", "value_template", "stat_cla",
                  "state_class", "unit_of_meas", "unit_of_measurement", "dev_cla", "device_class", "ent_cat",
                  "entity_category", "stat_t", "state_topic", "exp_aft", "expire_after", "frc_upd", "force_update",
                  "sug_dsp_prc", "suggested_display_precision", "ic", "icon", "obj_id", "object_id",
                  "def_ent_id", "default_entity_id", "en", "enabled_by_default", "avty", "availability"}
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
HA_UNITS = {
    "temperature": {"°C", "°F", "K"}, "humidity": {"%"}, "voltage": {"V", "mV", "µV", "kV", "MV"},
    "pressure": {"Pa", "kPa", "hPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "duration": {"d", "h", "min", "s", "ms"}, "illuminance": {"lx"}, "carbon_dioxide": {"ppm"},
    "signal_strength": {"dB", "dBm"}, "timestamp": {None},
}
HA_ENTITY_CATEGORIES = {"diagnostic"}  # "config" is not allowed for sensors


def check_discovery(config, state):
    """Fails on anything HA would refuse or not understand; returns the
    {field: sensor} of the components."""
    assert set(config) <= HA_ROOT_KEYS, set(config) - HA_ROOT_KEYS
    device, origin, components = config["dev"], config["o"], config["cmps"]
    assert set(device) <= HA_DEVICE_KEYS and (device.get("ids") or device.get("cns")) and device["name"]
    assert set(origin) <= HA_ORIGIN_KEYS and origin["name"]
    assert components and config["stat_t"] and config["avty_mode"] in ("all", "any", "latest")
    assert all(set(a) == {"t"} for a in config["avty"]) and config["qos"] in (0, 1, 2)
    fields = {}
    ids = set()
    for key, sensor in components.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key) and set(sensor) <= HA_SENSOR_KEYS, (key, set(sensor) - HA_SENSOR_KEYS)
        assert sensor["p"] == "sensor" and sensor["uniq_id"] not in ids
        ids.add(sensor["uniq_id"])
        device_class = sensor.get("dev_cla")
        if device_class:
            assert sensor.get("unit_of_meas") in HA_UNITS[device_class], sensor
        if device_class == "timestamp":
            assert "stat_cla" not in sensor  # HA refuses a state class on a timestamp sensor
        else:
            assert sensor["stat_cla"] in HA_STATE_CLASSES
        assert sensor.get("ent_cat", "diagnostic") in HA_ENTITY_CATEGORIES
        # the template must name something the state message has
        path = re.fullmatch(r"\{\{ value_json((?:\['[A-Za-z0-9_]+'\])+) \}\}", sensor["val_tpl"])
        assert path, sensor["val_tpl"]
        value = state
        for part in re.findall(r"\['([A-Za-z0-9_]+)'\]", path.group(1)):
            value = value[part]
        fields[sensor["name"]] = (sensor, value)
    return fields


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    broker = Mosquitto(str(tmp_path_factory.mktemp("mosquitto"))).start()
    yield broker
    broker.stop()


def board_config(rx, key, **changes):
    config = {
        "device_id": DEVICE_ID, "key": key.hex(),
        "receiver": {"host": "127.0.0.1", "udp_port": rx.udp_port, "http_port": rx.http_port},
        "transports": ["udp"], "sensors": [{"type": "dht22", "pin": 4}, {"type": "battery"}], "interval_s": 1, "log": True,
    }
    config.update(changes)
    return config


def start_board(tmp_path, rx, key):
    flash = tmp_path / "flash"
    unix_board.install(flash, board_config(rx, key))
    return unix_board.Board(flash, log_path=tmp_path / "board.log").start()


def acked(board):
    return [int(line.split()[1]) for line in list(board.lines) if line.startswith("acked ")]


def test_firmware_readings_appear_as_home_assistant_entities(mosquitto, tmp_path):
    key = os.urandom(32)
    rx = ReceiverProcess(tmp_path / "rx", extra_args=["--mqtt", mosquitto.url])
    rx.add_device(DEVICE, key, DEVICE_ID)
    subscriber = Subscriber(mosquitto.port)
    board = None
    try:
        rx.start()
        board = start_board(tmp_path, rx, key)
        board.wait_for(lambda b: len(acked(b)) >= 3, timeout=60)
        state = json.loads(wait_for_topic(subscriber, "mpseal/dev/state", lambda p: json.loads(p)["seq"] >= 3))
        config = json.loads(wait_for_topic(subscriber, DISCOVERY % DEVICE_ID))
        sensors = check_discovery(config, state)
        assert {"temperature", "humidity", "battery", "last seen"} <= set(sensors)
        assert sensors["temperature"][0]["dev_cla"] == "temperature" and sensors["temperature"][0]["unit_of_meas"] == "°C"
        assert sensors["battery"][0]["dev_cla"] == "voltage" and sensors["battery"][0]["ent_cat"] == "diagnostic"
        assert config["stat_t"] == "mpseal/dev/state"
        assert {a["t"] for a in config["avty"]} == {"mpseal/receiver/availability", "mpseal/dev/availability"}
        # the state is the stored reading, from the real firmware
        stored = {r["seq"]: r for r in rx.readings(DEVICE)}
        assert state["values"] == stored[state["seq"]]["value"] and state["time_source"] == "arrival"
        assert state["values"]["temperature"] == sensors["temperature"][1]
        for topic, expected in (("mpseal/dev/availability", b"online"), ("mpseal/receiver/availability", b"online")):
            assert wait_for_topic(subscriber, topic) == expected
        # retained where HA expects it: a client subscribing later still gets them
        late = Subscriber(mosquitto.port)
        try:
            for topic in (DISCOVERY % DEVICE_ID, "mpseal/dev/state", "mpseal/dev/availability", "mpseal/receiver/availability"):
                wait_for_topic(late, topic)
                assert late.on(topic)[0][2], "%s is not retained" % topic
        finally:
            late.close()
        # every state update is a reading the receiver stored, in order
        seqs = [json.loads(m[1])["seq"] for m in subscriber.on("mpseal/dev/state")]
        assert seqs == sorted(seqs) and set(seqs) <= set(stored)
        # Home Assistant restarts: it says `online` and gets discovery again
        before = len(subscriber.on(DISCOVERY % DEVICE_ID))
        subscriber.publish("homeassistant/status", b"online")
        wait_until(lambda: len(subscriber.on(DISCOVERY % DEVICE_ID)) > before, timeout=20, what="discovery after HA birth")
        board.stop()
        rx.stop()  # a clean stop says the receiver is gone (a crash: the broker's will says it)
        wait_for_topic(subscriber, "mpseal/receiver/availability", lambda p: p == b"offline", timeout=20)
    finally:
        if board is not None:
            board.stop()
        rx.stop()
        subscriber.close()


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_broker_outage_loses_no_last_value_and_delays_no_ack(mosquitto, tmp_path):
    key, probe_key = os.urandom(32), os.urandom(32)
    rx = ReceiverProcess(tmp_path / "rx", extra_args=["--mqtt", mosquitto.url])
    rx.add_device(DEVICE, key, DEVICE_ID)
    rx.add_device(PROBE, probe_key, PROBE_ID)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3.0)
    seq = [0]

    def probe_ack_ms():
        """One reading from the probe device; the ack's round trip in ms (None: no ack)."""
        seq[0] += 1
        packet = mpseal.seal(probe_key, PROBE_ID, seq[0], payload.encode_values({"temperature": 10 + seq[0] / 100}))
        start = time.perf_counter()
        sock.sendto(packet, ("127.0.0.1", rx.udp_port))
        try:
            sock.recvfrom(4096)
        except socket.timeout:
            return None
        return (time.perf_counter() - start) * 1000

    board = None
    subscriber = Subscriber(mosquitto.port)
    try:
        rx.start()
        board = start_board(tmp_path, rx, key)
        board.wait_for(lambda b: len(acked(b)) >= 2, timeout=60)
        wait_for_topic(subscriber, "mpseal/dev/state")
        before = []
        started = time.monotonic()
        while time.monotonic() - started < 10.0:  # connected, publishing: the baseline
            before.append(probe_ack_ms())
            time.sleep(0.05)  # pacing the probe, not synchronisation
        subscriber.close()

        mosquitto.stop()
        down_at = time.monotonic()
        during = []
        while time.monotonic() - down_at < OUTAGE_S:
            during.append(probe_ack_ms())
            time.sleep(0.05)  # pacing the probe, not synchronisation
        board_acks_in_outage = len([s for s in acked(board)]) - 2
        board.stop()
        board = None
        last = {name: max(r["seq"] for r in rx.readings(name)) for name in (DEVICE, PROBE)}
        mosquitto.start()
        up_at = time.monotonic()

        subscriber = Subscriber(mosquitto.port)  # a fresh broker: only what was published again is there
        for name in (DEVICE, PROBE):
            state = json.loads(wait_for_topic(subscriber, "mpseal/%s/state" % name,
                                              lambda p, n=name: json.loads(p)["seq"] == last[n], timeout=60))
            assert state["values"] == {r["seq"]: r for r in rx.readings(name)}[last[name]]["value"]
        republished_s = time.monotonic() - up_at
        for device_id in (DEVICE_ID, PROBE_ID):
            assert json.loads(wait_for_topic(subscriber, DISCOVERY % device_id))["cmps"]
        assert wait_for_topic(subscriber, "mpseal/receiver/availability") == b"online"
        metrics = rx.api_text("/metrics")
        connects = int(float(re.search(r"^mpseal_mqtt_connects_total (\S+)$", metrics, re.M).group(1)))
        assert connects >= 2

        assert None not in before and None not in during, "an ack was lost while the broker was down"
        assert board_acks_in_outage > 0
        report = {
            "outage_s": OUTAGE_S, "probe_acks_before": len(before), "probe_acks_during": len(during),
            "board_acks_during_outage": board_acks_in_outage,
            "ack_ms_before": {"p50": statistics.median(before), "p99": percentile(before, 0.99), "max": max(before)},
            "ack_ms_during": {"p50": statistics.median(during), "p99": percentile(during, 0.99), "max": max(during)},
            "last_value_republished_after_s": round(republished_s, 2), "mqtt_connects": connects,
        }
        (tmp_path / "outage_report.json").write_text(json.dumps(report, indent=2))
        print("\nbroker outage: %s" % json.dumps(report))
    finally:
        if board is not None:
            board.stop()
        rx.stop()
        subscriber.close()
        sock.close()
        if mosquitto.proc is None:
            mosquitto.start()


def test_tls_broker_with_username_and_password_file(tmp_path):
    """mqtts:// with the broker's CA, a username and a password from a file;
    a wrong password is refused by the broker and changes nothing for ingest."""
    folder = str(tmp_path)
    tls = make_tls_files(folder)
    passwd = os.path.join(folder, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, "mpseal", "s3cret pw"], check=True, timeout=30)
    broker = Mosquitto(folder, "allow_anonymous false\npassword_file %s\ncafile %s\ncertfile %s\nkeyfile %s\n"
                       % (passwd, tls["ca.pem"], tls["server.pem"], tls["server.key"])).start()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret pw\n")
    bad.write_text("wrong\n")
    key = os.urandom(32)
    receivers = []
    subscriber = None
    try:
        for name, password_file in (("good", good), ("bad", bad)):
            rx = ReceiverProcess(tmp_path / ("rx-" + name), extra_args=[
                "--mqtt", "mqtts://mpseal@localhost:%d" % broker.port, "--mqtt-ca-file", tls["ca.pem"],
                "--mqtt-password-file", str(password_file), "--mqtt-prefix", "mpseal-" + name])
            rx.add_device(PROBE, key, PROBE_ID)
            receivers.append(rx.start())
        subscriber = Subscriber(broker.port, ca_file=tls["ca.pem"], username="mpseal", password="s3cret pw")
        for seq, rx in enumerate(receivers, 1):
            packet = mpseal.seal(key, PROBE_ID, seq, payload.encode_values({"temperature": 20 + seq}))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(packet, ("127.0.0.1", rx.udp_port))
                assert sock.recvfrom(4096)[0]  # acked whatever the broker thinks of us
        state = json.loads(wait_for_topic(subscriber, "mpseal-good/probe/state"))
        assert state["values"] == {"temperature": 21.0}
        wait_until(lambda: "mpseal_mqtt_connected 0.0" in receivers[1].api_text("/metrics"), what="bad login counted as disconnected")
        assert subscriber.last("mpseal-bad/probe/state") is None
        assert "mpseal_mqtt_connected 1.0" in receivers[0].api_text("/metrics")
        for rx in receivers:
            log = rx.log_path.read_text()
            assert "s3cret" not in log and "wrong" not in log.replace("went wrong", "")
        assert "mqtt: cannot reach" in receivers[1].log_path.read_text()
    finally:
        for rx in receivers:
            rx.stop()
        if subscriber is not None:
            subscriber.close()
        broker.stop()


def test_broker_from_the_config_file(mosquitto, tmp_path):
    """[receive] mqtt = ... in mpseal.toml does what --mqtt does (flags win)."""
    from mpseal_host.storage import Storage
    from receiver_helpers import RunningReceiver

    config = tmp_path / "mpseal.toml"
    config.write_text('[receive]\nmqtt = "%s"\nmqtt_prefix = "fromfile"\n' % mosquitto.url)
    db = tmp_path / "db.sqlite"
    storage = Storage(str(db))
    device = storage.add_device(PROBE)
    storage.close()
    subscriber = Subscriber(mosquitto.port)
    receiver = RunningReceiver(db, env={"MPSEAL_CONFIG": str(config)})
    try:
        packet = mpseal.seal(device.master_key, device.id, 1, payload.encode_values({"humidity": 55.5}))
        assert receiver.udp_exchange(packet) is not None
        state = json.loads(wait_for_topic(subscriber, "fromfile/probe/state"))
        assert state["values"] == {"humidity": 55.5} and state["seq"] == 1
    finally:
        code, out, err = receiver.stop()
        subscriber.close()
    assert code == 0, err
    assert "without TLS" in err  # the plaintext warning
