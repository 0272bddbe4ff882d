# The board's settings: /config.json written by provisioning (format in
# docs/design.md). Every key is checked once at boot, and a bad one stops the
# app with a message naming the key, so a typo never shows up later as a
# strange runtime failure. Commands that change settings (set-interval,
# rotate-key) write the file back atomically (settings.py).
#
# Boot-only code: load() turns the file into a Config of plain values, and the
# app then unloads this module (app.py), so the checking code below does not
# sit in the heap for the board's whole life.
#
# Its names stay, though: MicroPython interns every name a module uses (the
# keys, helper and parameter names) when it loads, and never frees them. So
# the checks are written as tables over the key names (which are the Config
# attribute names anyway) rather than one helper per kind of check; see
# docs/firmware.md "Memory and size".
import binascii
import json
from micropython import const

import flashfs

_MAX_U32 = const(0xFFFFFFFF)

# (key, lowest, highest, default; None = required): integers at the top level.
# const() tuples: substituted where used, so the two names are not interned.
_INTS = const((
    ("device_id", 0, _MAX_U32, None),
    ("epoch", 0, 255, 0),
    ("interval_s", 0, _MAX_U32, 60),
    ("queue_max", 1, 10000, 100),  # sealed packets kept while offline (~64 bytes each)
    ("max_readings", 0, _MAX_U32, 0),  # 0 = forever (tests, bench)
))
# ... and in "receiver"
# Every sensor type the firmware has (sensors.py loads sensor_<type>.py; the
# host's provisioning check reads this line: mpseal_tools.board_config).
_SENSOR_TYPES = const("synthetic dht11 dht22 ds18b20 battery")
_PORTS = const((("receiver.udp_port", 1, 65535, 4740), ("receiver.http_port", 1, 65535, 8740)))


class ConfigError(ValueError):
    pass


class Config:
    """The checked settings, as plain attributes (names in check()). No
    methods on purpose: nothing in a Config refers back to this module, so
    the module can be collected while the app keeps its Config. `data` is the
    parsed file, for transports that read their own section (transport_sms);
    the app drops it once the transports are built."""


def _bad(path, text, value):
    """The error for key `path` ("receiver.host"): it must be `text`, got `value`."""
    return ConfigError("/config.json: key '%s' must be %s, got %r" % (path, text, value))


def _get(data, path, default, type):
    """The value at key `path` ("epoch", "receiver.host": the last part is
    looked up in `data`), or default when absent; it must be a `type`."""
    value = data.get(path[path.rfind(".") + 1 :], default)
    # bool is an int subclass: true is no port number
    if not isinstance(value, type) or isinstance(value, bool):
        raise _bad(path, "a JSON integer" if type is int else "a JSON string", value)
    return value


def _set_ints(config, data, items):
    """Checks and sets the integers `items` ((path, min, max, default), ...)."""
    for path, min, max, default in items:
        value = _get(data, path, default, int)
        if not min <= value <= max:
            raise _bad(path, "an integer %d..%d" % (min, max), value)
        setattr(config, path[path.rfind(".") + 1 :], value)


def check(data):
    """Config from the parsed file; raises ConfigError naming the bad key."""
    if not isinstance(data, dict):
        raise ConfigError("/config.json must hold a JSON object")
    c = Config()
    c.data = data
    _set_ints(c, data, _INTS)
    c.name = _get(data, "name", "", str)
    key = _get(data, "key", None, str)
    c.key = None
    if len(key) == 64:
        try:
            c.key = binascii.unhexlify(key)
        except ValueError:  # includes binascii.Error on CPython
            pass
    if c.key is None:  # never the value in the message: it is the device key
        raise _bad("key", "64 hex digits (the 32-byte device key)", "<%d characters>" % len(key))
    receiver = data.get("receiver")
    if not isinstance(receiver, dict):
        raise _bad("receiver", 'an object like {"host": "192.168.1.10"}', receiver)
    c.host = _get(receiver, "receiver.host", None, str)
    _set_ints(c, receiver, _PORTS)
    c.transports = data.get("transports", ["udp"])
    if not isinstance(c.transports, list) or not c.transports or not all(isinstance(t, str) for t in c.transports):
        raise _bad("transports", 'a non-empty list of names like ["udp", "http"]', c.transports)
    c.sensors = data.get("sensors", [{"type": "synthetic"}])
    if not isinstance(c.sensors, list) or not all(isinstance(s, dict) and "type" in s for s in c.sensors):
        raise _bad("sensors", 'a list of objects like {"type": "dht22", "pin": 4}', c.sensors)
    for i, value in enumerate(c.sensors):
        if value["type"] not in _SENSOR_TYPES.split():
            raise _bad("sensors[%d].type" % i, "a sensor type (%s)" % _SENSOR_TYPES, value["type"])
        if value["type"] != "battery" and value["type"] != "synthetic":  # one data wire: the GPIO from provisioning
            _set_ints(Config(), value, (("sensors[%d].pin" % i, 0, 16, None),))  # checked only: the app reads value
    c.power = data.get("power", "always-on")
    if c.power not in ("always-on", "interval"):
        raise _bad("power", '"always-on" or "interval"', c.power)
    c.log = bool(data.get("log", False))  # one console line per reading
    c.wifi = data.get("wifi")
    if c.wifi is not None:
        _get(c.wifi, "wifi.ssid", None, str)
        _get(c.wifi, "wifi.password", "", str)
    c.webrepl = data.get("webrepl")
    if c.webrepl is not None:
        password = _get(c.webrepl, "webrepl.password", None, str)
        if not 4 <= len(password) <= 9:  # webrepl's own limit
            raise _bad("webrepl.password", "4..9 characters", "<%d characters>" % len(password))
    return c


def load():
    raw = flashfs.read_atomic("/config.json")
    if raw is None:
        raise ConfigError("/config.json is missing: provision the board first (mpseal provision)")
    try:
        data = json.loads(raw.decode())
    except ValueError:  # bad JSON or bad UTF-8
        raise ConfigError("/config.json is not valid JSON")
    return check(data)
