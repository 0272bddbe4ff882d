# The board's settings: /config.json written by provisioning (format in
# docs/design.md). Every key is checked once at boot, and a bad one stops the
# app with a message naming the key, so a typo never shows up later as a
# strange runtime failure. Commands that change settings (set-interval,
# rotate-key) write the file back atomically (save()).
#
# Boot-only code: load() turns the file into a Config of plain values, and the
# app then unloads this module (app.py), so the checking code below does not
# sit in the heap for the board's whole life. A command that changes a setting
# imports it again for save().
import binascii
import json
from micropython import const

import flashfs

PATH = "/config.json"
POWER_MODES = ("always-on", "interval")
_DEFAULT_UDP_PORT = const(4740)
_DEFAULT_HTTP_PORT = const(8740)
_DEFAULT_INTERVAL_S = const(60)
_DEFAULT_QUEUE_MAX = const(100)  # sealed packets kept while offline (~64 bytes each)


class ConfigError(ValueError):
    pass


class Config:
    """The checked settings, as plain attributes (names in load()). No methods
    on purpose: nothing in a Config refers back to this module, so the module
    can be collected while the app keeps its Config. `data` is the parsed
    file, for transports that read their own section (transport_sms); the app
    drops it once the transports are built."""


def _bad(key, want, got):
    return ConfigError("%s: key '%s' must be %s, got %r" % (PATH, key, want, got))


def _int(d, key, low, high, default=None, prefix=""):
    value = d.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(prefix + key, "an integer %d..%d" % (low, high), value)
    return value


def _str(d, key, default=None, prefix=""):
    value = d.get(key, default)
    if not isinstance(value, str):
        raise _bad(prefix + key, "a string", value)
    return value


def _key(hex_key):
    try:
        return binascii.unhexlify(hex_key) if len(hex_key) == 64 else None
    except ValueError:  # includes binascii.Error on CPython
        return None


def check(data):
    """Config from the parsed file; raises ConfigError naming the bad key."""
    if not isinstance(data, dict):
        raise ConfigError("%s must hold a JSON object" % PATH)
    c = Config()
    c.data = data
    c.device_id = _int(data, "device_id", 0, 0xFFFFFFFF)
    c.name = _str(data, "name", "")
    key = _str(data, "key")
    c.key = _key(key)
    if c.key is None:
        raise _bad("key", "64 hex digits (the 32-byte device key)", "<%d characters>" % len(key))
    c.epoch = _int(data, "epoch", 0, 255, 0)
    receiver = data.get("receiver")
    if not isinstance(receiver, dict):
        raise _bad("receiver", 'an object like {"host": "192.168.1.10"}', receiver)
    c.host = _str(receiver, "host", prefix="receiver.")
    c.udp_port = _int(receiver, "udp_port", 1, 65535, _DEFAULT_UDP_PORT, "receiver.")
    c.http_port = _int(receiver, "http_port", 1, 65535, _DEFAULT_HTTP_PORT, "receiver.")
    c.transports = data.get("transports", ["udp"])
    if not isinstance(c.transports, list) or not c.transports or not all(isinstance(t, str) for t in c.transports):
        raise _bad("transports", 'a non-empty list of names like ["udp", "http"]', c.transports)
    c.sensors = data.get("sensors", [{"type": "synthetic"}])
    if not isinstance(c.sensors, list) or not all(isinstance(s, dict) and "type" in s for s in c.sensors):
        raise _bad("sensors", 'a list of objects like {"type": "dht22", "pin": 4}', c.sensors)
    c.interval_s = _int(data, "interval_s", 0, 0xFFFFFFFF, _DEFAULT_INTERVAL_S)
    c.power = data.get("power", "always-on")
    if c.power not in POWER_MODES:
        raise _bad("power", " or ".join(POWER_MODES), c.power)
    c.queue_max = _int(data, "queue_max", 1, 10000, _DEFAULT_QUEUE_MAX)
    c.log = bool(data.get("log", False))  # one console line per reading
    c.max_readings = _int(data, "max_readings", 0, 0xFFFFFFFF, 0)  # 0 = forever (tests, bench)
    c.wifi = data.get("wifi")
    if c.wifi is not None:
        _str(c.wifi, "ssid", prefix="wifi.")
        _str(c.wifi, "password", "", prefix="wifi.")
    c.webrepl = data.get("webrepl")
    if c.webrepl is not None:
        password = _str(c.webrepl, "password", prefix="webrepl.")
        if not 4 <= len(password) <= 9:  # webrepl's own limit
            raise _bad("webrepl.password", "4..9 characters", "<%d characters>" % len(password))
    return c


def _read(path):
    raw = flashfs.read_atomic(path)
    if raw is None:
        raise ConfigError("%s is missing: provision the board first (mpseal provision)" % path)
    try:
        return json.loads(raw.decode())
    except ValueError:  # bad JSON or bad UTF-8
        raise ConfigError("%s is not valid JSON" % path)


def load(path=PATH):
    return check(_read(path))


def save(changes, path=PATH):
    """Writes `changes` ({key: value}, e.g. {"interval_s": 30}; bytes values
    are written as hex) into the file. The file is read again rather than kept
    in RAM, so keys this firmware does not know (other transports' sections)
    survive."""
    data = _read(path)
    for key in changes:
        value = changes[key]
        data[key] = binascii.hexlify(value).decode() if isinstance(value, bytes) else value
    flashfs.write_atomic(path, json.dumps(data).encode())
