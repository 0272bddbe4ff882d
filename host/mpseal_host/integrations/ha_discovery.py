"""MQTT messages for Home Assistant, free of I/O: topics, the device
discovery payload, state and availability (docs/integrations.md).

- `homeassistant/device/mpseal_<id>/config` (retained): one device discovery
  message per device (HA 2024.11+): `dev` (the board), `o` (origin: mpseal),
  `cmps` (one sensor per numeric field the device sends, plus its last-seen
  timestamp), shared `stat_t` and `avty`. Units and device classes come from
  channels.py. Fields whose names are not plain (`[A-Za-z0-9_]{1,64}`) are
  not announced (they go into a unique_id and a template).
- `mpseal/<name>/state` (retained): the last reading as JSON
  `{"values": {...}, "seq", "received_at", "measured_at", "time_source",
  "transport"}`; a non-finite float is null (HA shows "unknown").
- `mpseal/<name>/availability` (retained): `online` / `offline`, computed by
  the receiver from the device's interval (fleet.py): boards never speak MQTT.
- `mpseal/receiver/availability` (retained, also the will): `offline` when
  the receiver is gone; the sensors need both (`avty_mode: all`).
"""
import json

import mpseal

from mpseal_host.integrations.channels import CHANNEL_META, NOT_SENSORS, PLAIN_NAME, finite_or_none, numeric_fields
from mpseal_host.integrations.timerange import iso

ONLINE = "online"
OFFLINE = "offline"
ORIGIN = {"name": "mpseal"}
QOS = 1

SW_VERSION = mpseal.__version__  # the origin's software version in discovery


class Topics:
    def __init__(self, prefix="mpseal", discovery_prefix="homeassistant"):
        self.prefix = prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix.rstrip("/")

    def state(self, name):
        return "%s/%s/state" % (self.prefix, name)

    def availability(self, name):
        return "%s/%s/availability" % (self.prefix, name)

    @property
    def bridge_availability(self):
        return "%s/receiver/availability" % self.prefix

    @property
    def ha_status(self):
        """Where HA announces itself (`online` after it starts): discovery is then sent again."""
        return "%s/status" % self.discovery_prefix

    def discovery(self, device_id):
        return "%s/device/%s/config" % (self.discovery_prefix, object_id(device_id))


def object_id(device_id):
    """The HA node id of a device: stable (the protocol device id), and only
    characters HA allows in a discovery topic."""
    return "mpseal_%d" % device_id


def announced_fields(value):
    """The numeric, plainly named fields of a reading that become HA sensors, sorted."""
    return sorted(k for k in numeric_fields(value) if PLAIN_NAME.match(k) and k not in NOT_SENSORS)


def _sensor(node, field):
    unit, device_class, category = CHANNEL_META.get(field, (None, None, None))
    sensor = {
        "p": "sensor",
        "name": field.replace("_", " "),
        "uniq_id": "%s_%s" % (node, field),
        "val_tpl": "{{ value_json['values']['%s'] }}" % field,
        "stat_cla": "measurement",
    }
    if unit:
        sensor["unit_of_meas"] = unit
    if device_class:
        sensor["dev_cla"] = device_class
    if category:
        sensor["ent_cat"] = category
    return sensor


def discovery_payload(device_id, name, fields, topics, synthetic=False):
    """The device discovery message (a dict) of one device with these fields."""
    node = object_id(device_id)
    components = {"%s_%s" % (node, field): _sensor(node, field) for field in fields}
    components[node + "_last_seen"] = {
        "p": "sensor",
        "name": "last seen",
        "uniq_id": node + "_last_seen",
        "dev_cla": "timestamp",
        "val_tpl": "{{ value_json['received_at'] }}",
        "ent_cat": "diagnostic",
    }
    origin = dict(ORIGIN, sw=SW_VERSION)
    device = {"ids": [node], "name": name, "mf": "mpseal", "mdl": "synthetic sensor" if synthetic else "mpseal board"}
    return {
        "dev": device,
        "o": origin,
        "cmps": components,
        "stat_t": topics.state(name),
        "avty": [{"t": topics.bridge_availability}, {"t": topics.availability(name)}],
        "avty_mode": "all",
        "qos": QOS,
    }


def state_payload(reading):
    """The state message (a dict) of a reading dict with measured_at (timerange.with_measured_at)."""
    value = reading["value"]
    if isinstance(value, dict):
        body = {"values": {k: finite_or_none(v) if not isinstance(v, (dict, list)) else None for k, v in value.items()}}
    else:
        body = {"values": {}, "value": finite_or_none(value) if not isinstance(value, (dict, list)) else None}
    body.update(
        seq=reading["seq"],
        received_at=iso(reading["received_at"]).replace("Z", "+00:00"),
        measured_at=iso(reading["measured_at"]).replace("Z", "+00:00"),
        time_source=reading["time_source"],
        transport=reading["transport"],
    )
    return body


def encode(payload):
    """MQTT payload bytes of a dict (compact JSON, never NaN)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
