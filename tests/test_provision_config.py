"""Provisioning checks the whole /config.json on the host (board_config.py)
before any board or database is touched: unknown keys refused, types and
ranges checked, the error naming the key; --sensor TYPE[:PIN] with the
board's pin names; transports kept as asked (sms too). Fast: no board here,
except a recording stand-in for the connection (a MOCK of the board's
filesystem: provisioning over the virtual board is test_provision_e2e.py)."""
import json
import re
import os

import pytest
import yaml

from conftest import BIN, mpseal_cli
from mpseal_host.storage import Storage
from mpseal_tools import board_config
from mpseal_tools.board_config import ConfigCheckError, check_config, parse_sensor
from mpseal_tools.board.catalog import get_board
from mpseal_tools.provision import board_config as make_config
from mpseal_tools.provision import provision

KEY = "ab" * 32
GOOD = {"device_id": 3, "name": "greenhouse", "key": KEY, "epoch": 0,
        "receiver": {"host": "192.168.1.10", "udp_port": 4740, "http_port": 8740},
        "wifi": {"ssid": "lab", "password": "wifi-secret"}, "transports": ["udp", "http"],
        "sensors": [{"type": "dht22", "pin": 4}, {"type": "battery"}]}
SECRETS = {"wifi": {"ssid": "lab", "password": "wifi-secret"}, "receiver": {"host": "192.168.1.10"}}


def with_change(path, value):
    config = json.loads(json.dumps(GOOD))
    node, parts = config, path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return config


DELETE = object()
BAD = [
    ("sensor", [{"type": "dht22"}], "config key 'sensor': unknown key"),  # the typo from the issue
    ("interval_s", "sixty", "config key 'interval_s': must be an integer (got 'sixty')"),
    ("sensors.0.type", "dht23", "config key 'sensors[0].type': must be one of battery, dht11, dht22, ds18b20, synthetic"),
    ("sensors.0.pin", DELETE, "config key 'sensors[0].pin': is required"),
    ("sensors.0.pin", 17, "config key 'sensors[0].pin': must be an integer 0..16 (got 17)"),
    ("sensors.1.pin", 4, "config key 'sensors[1].pin': unknown key"),  # a battery has no pin
    ("sensors.1.volts_full_scale", "4.2", "config key 'sensors[1].volts_full_scale': must be a number"),
    ("receiver.udp_port", "4740", "config key 'receiver.udp_port': must be an integer"),
    ("receiver.host", DELETE, "config key 'receiver.host': is required"),
    ("transports", ["udp", "carrier-pigeon"], "config key 'transports[1]': must be one of"),
    ("transports", ["udp", "sms"], "config key 'sms': is required when transports has sms"),
    ("power", "turbo", "config key 'power': must be one of always-on, interval"),
    ("log", "yes", "config key 'log': must be true or false"),
    ("key", "abc", "config key 'key': must be 64 hex digits"),
    ("wifi.pasword", "x", "config key 'wifi.pasword': unknown key"),
    ("webrepl", {"password": "far-too-long"}, "config key 'webrepl.password': must be 4..9 characters (got 12 characters)"),
]


def test_a_complete_config_passes():
    assert check_config(GOOD) is GOOD


@pytest.mark.parametrize("path,value,message", BAD, ids=[b[0] + "-" + str(i) for i, b in enumerate(BAD)])
def test_every_bad_key_is_named(path, value, message):
    with pytest.raises(ConfigCheckError) as caught:
        check_config(with_change(path, value))
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value) and KEY not in str(caught.value) and "far-too-long" not in str(caught.value)


def test_the_host_knows_exactly_the_firmwares_sensor_types():
    assert set(board_config.SENSOR_KEYS) == set(board_config.sensor_types())
    assert {"udp", "http", "sms"} <= set(board_config.transport_names())


@pytest.mark.parametrize("text,expected", [
    ("dht22:D4", {"type": "dht22", "pin": 2}),  # the D1 mini's D4 is GPIO2
    ("dht22:D2", {"type": "dht22", "pin": 4}),
    ("dht11:GPIO5", {"type": "dht11", "pin": 5}),
    ("ds18b20:13", {"type": "ds18b20", "pin": 13}),
    ("dht22", {"type": "dht22", "pin": 4}),  # boards.yaml pins.dht
    ("battery", {"type": "battery"}),
    ("battery:4.2", {"type": "battery", "volts_full_scale": 4.2}),
    ("synthetic", {"type": "synthetic"}),
])
def test_sensor_arguments_speak_the_boards_pin_names(text, expected):
    assert parse_sensor(text, get_board("wemos")) == expected


@pytest.mark.parametrize("text,message", [
    ("dht23:D2", "unknown sensor type 'dht23'"),
    ("dht22:D9", "'D9' is no pin of wemos (names: D0, D1"),
    ("ds18b20", "which pin? e.g. --sensor ds18b20:D0"),
    ("battery:full", "full-scale voltage"),
    ("synthetic:D2", "synthetic takes no argument"),
])
def test_bad_sensor_arguments_say_what_to_write(text, message):
    with pytest.raises(ConfigCheckError, match=re.escape(message)):
        parse_sensor(text, get_board("wemos"))


def test_esp01_pins_by_their_gpio_names():
    assert parse_sensor("dht22:GPIO2", get_board("esp01")) == {"type": "dht22", "pin": 2}
    assert parse_sensor("dht22", get_board("esp01")) == {"type": "dht22", "pin": 2}


def test_no_sensors_is_refused_and_synthetic_only_when_asked():
    with pytest.raises(ConfigCheckError, match="no sensors given.*--sensor synthetic"):
        make_config(1, "x", bytes(32), 0, SECRETS)
    config = make_config(1, "x", bytes(32), 0, SECRETS, sensors=[{"type": "synthetic"}])
    assert config["sensors"] == [{"type": "synthetic"}]


class RecordingBoard:
    """MOCK of a board connection: keeps the files written to it."""

    def __init__(self):
        self.files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_file(self, path):
        from mpseal_tools.board.connection import BoardError

        if path not in self.files:
            raise BoardError("no %s" % path)
        return self.files[path]

    def put_file(self, path, data, progress=None, make_parents=True):
        self.files[path] = bytes(data)

    def exec(self, code):  # provisioning's clean-up script (run for real in test_provision_e2e.py)
        return ""

    def soft_reset(self):
        pass


def test_provisioning_keeps_sms_and_the_sensors_asked_for(tmp_path):
    secrets = dict(SECRETS, config={"sms": {"host_number": "+4915100000002"}})
    storage = Storage(str(tmp_path / "db.sqlite"))
    board = RecordingBoard()
    sensors = [parse_sensor("dht22:D2", get_board("wemos")), parse_sensor("battery", get_board("wemos"))]
    try:
        provision("field", storage, secrets, lambda: board, transports=["udp", "sms"], sensors=sensors)
    finally:
        storage.close()
    config = json.loads(board.files["/config.json"])
    assert config["transports"] == ["udp", "sms"] and config["sms"] == {"host_number": "+4915100000002"}
    assert config["sensors"] == [{"type": "dht22", "pin": 4}, {"type": "battery"}]


def write_secrets(tmp_path, extra=None):
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(dict(SECRETS, **(extra or {}))))
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["--sensor", "dht23"], b"mpseal: --sensor dht23: unknown sensor type 'dht23'"),
    ([], b"mpseal: config key 'sensors': no sensors given"),
    (["--sensor", "battery", "--board", "esp01", "--transport", "lora"], b"--transport lora: the esp01 board has no"),
])
def test_the_cli_refuses_before_touching_board_or_database(tmp_path, args, message):
    db = tmp_path / "db.sqlite"
    result = mpseal_cli("provision", "greenhouse", "--port", "/dev/null", "--db", str(db),
                        "--secrets", write_secrets(tmp_path), *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith(b"mpseal: warning:")]
    assert b"Traceback" not in result.stderr and len(errors) == 1, result.stderr
    assert not db.exists() or Storage(str(db)).list_devices() == []


def test_a_bad_key_in_the_secrets_file_is_named(tmp_path):
    secrets = write_secrets(tmp_path, {"config": {"interval_s": "sixty", "sensors": [{"type": "battery"}]}})
    result = mpseal_cli("provision", "greenhouse", "--port", "/dev/null", "--db", str(tmp_path / "db.sqlite"),
                        "--secrets", secrets)
    assert result.returncode == 1 and b"config key 'interval_s': must be an integer (got 'sixty')" in result.stderr


def test_configure_changes_wifi_and_receiver_and_keeps_the_key():
    from mpseal_tools.configure import changes, configure

    board = RecordingBoard()
    board.files["/config.json"] = json.dumps(GOOD).encode()
    secrets = {"wifi": {"ssid": "home", "password": "new-secret"}, "receiver": {"host": "10.0.0.5", "udp_port": 5000}}
    before, after = configure(lambda: board, secrets, "greenhouse")
    written = json.loads(board.files["/config.json"])
    assert written == after and written["key"] == KEY and written["device_id"] == 3 and written["sensors"] == GOOD["sensors"]
    assert written["wifi"] == {"ssid": "home", "password": "new-secret"}
    assert written["receiver"] == {"host": "10.0.0.5", "udp_port": 5000, "http_port": 8740}
    text = "; ".join(changes(before, after))
    assert "receiver.host '192.168.1.10' -> '10.0.0.5'" in text and "wifi.password (changed)" in text
    assert "new-secret" not in text


def test_configure_refuses_another_device_and_an_unprovisioned_board():
    from mpseal_tools.configure import NotProvisioned, configure

    board = RecordingBoard()
    with pytest.raises(NotProvisioned, match="provision it first"):
        configure(lambda: board, SECRETS, "greenhouse")
    board.files["/config.json"] = json.dumps(GOOD).encode()
    with pytest.raises(NotProvisioned, match="provisioned as 'greenhouse', not 'cellar'"):
        configure(lambda: board, SECRETS, "cellar")
    assert json.loads(board.files["/config.json"]) == GOOD  # untouched


def test_mpseal_configure_is_a_command():
    assert os.path.exists(os.path.join(BIN, "mpseal"))
    result = mpseal_cli("configure", "--help")
    assert result.returncode == 0 and b"--receiver-host" in result.stdout
