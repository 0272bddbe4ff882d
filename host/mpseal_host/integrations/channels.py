"""What a value name means outside mpseal: its unit, and the Home Assistant
device class / state class / entity category that fit it. One table, used by
the MQTT discovery payload, the Prometheus metric help and the page.

The numbered channels are mpseal's (docs/protocol.md section 6); units are the
ones Home Assistant accepts for each device class (a sensor whose unit does
not match its device class is refused by HA), so `battery` (volts) is a
`voltage`, not HA's `battery` class (which is a percentage).
"""
import math
import re

# name -> (unit, HA device_class, HA entity_category)
CHANNEL_META = {
    "temperature": ("\u00b0C", "temperature", None),
    "humidity": ("%", "humidity", None),
    "battery": ("V", "voltage", "diagnostic"),
    "pressure": ("hPa", "pressure", None),
    "age": ("s", "duration", "diagnostic"),
    "light": ("lx", "illuminance", None),
    "co2": ("ppm", "carbon_dioxide", None),
    "rssi": ("dBm", "signal_strength", "diagnostic"),
}

# Values that describe the device rather than the world: never charted as a
# sensor of their own on the page. `synthetic` is the board's marker for a
# made-up sensor (firmware/sensors.py Synthetic).
MARKER_FIELDS = ("synthetic",)
# The board's OTA status (docs/ota.md): the fleet view shows it, as a version
# and a state, never as a sensor (no chart, no HA entity, no metric series).
STATUS_FIELDS = ("app_release", "app_on_trial")
NOT_SENSORS = MARKER_FIELDS + STATUS_FIELDS

# A value name we turn into an HA entity / metric label must be plain: it ends
# up in a unique_id and a Jinja template. Others are still stored, exported
# and shown on the page, just not announced.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def unit(name):
    meta = CHANNEL_META.get(name)
    return meta[0] if meta else None


def is_number(value):
    """True for int/float values a chart or a gauge can take (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_fields(value):
    """{name: number} of a reading's value (values payload or a JSON object); {} otherwise."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and is_number(v)}


def finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
