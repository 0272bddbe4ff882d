# The board's settings: /config.json written by provisioning (format in
# docs/design.md). Every key is checked once at boot, and a bad one stops the
# app with a message naming the key, so a typo never shows up later as a
# strange runtime failure. Commands that change settings (set-interval,
# rotate-key) write the file back atomically.
import binascii
import json

import flashfs

PATH = "/config.json"
POWER_MODES = ("always-on", "interval")
DEFAULT_UDP_PORT = 4740
DEFAULT_HTTP_PORT = 8740
DEFAULT_INTERVAL_S = 60
DEFAULT_QUEUE_MAX = 100  # sealed packets kept while offline (~64 bytes each)


class ConfigError(ValueError):
    pass


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


class Config:
    def __init__(self, data):
        if not isinstance(data, dict):
            raise ConfigError("%s must hold a JSON object" % PATH)
        self.data = data
        self.device_id = _int(data, "device_id", 0, 0xFFFFFFFF)
        self.name = _str(data, "name", "")
        key = _str(data, "key")
        try:
            self.key = binascii.unhexlify(key) if len(key) == 64 else None
        except ValueError:  # includes binascii.Error on CPython
            self.key = None
        if self.key is None:
            raise _bad("key", "64 hex digits (the 32-byte device key)", "<%d characters>" % len(key))
        self.epoch = _int(data, "epoch", 0, 255, 0)
        receiver = data.get("receiver")
        if not isinstance(receiver, dict):
            raise _bad("receiver", 'an object like {"host": "192.168.1.10"}', receiver)
        self.host = _str(receiver, "host", prefix="receiver.")
        self.udp_port = _int(receiver, "udp_port", 1, 65535, DEFAULT_UDP_PORT, "receiver.")
        self.http_port = _int(receiver, "http_port", 1, 65535, DEFAULT_HTTP_PORT, "receiver.")
        self.transports = data.get("transports", ["udp"])
        if not isinstance(self.transports, list) or not self.transports or not all(isinstance(t, str) for t in self.transports):
            raise _bad("transports", 'a non-empty list of names like ["udp", "http"]', self.transports)
        self.sensors = data.get("sensors", [{"type": "synthetic"}])
        if not isinstance(self.sensors, list) or not all(isinstance(s, dict) and "type" in s for s in self.sensors):
            raise _bad("sensors", 'a list of objects like {"type": "dht22", "pin": 4}', self.sensors)
        self.interval_s = _int(data, "interval_s", 0, 0xFFFFFFFF, DEFAULT_INTERVAL_S)
        self.power = data.get("power", "always-on")
        if self.power not in POWER_MODES:
            raise _bad("power", " or ".join(POWER_MODES), self.power)
        self.queue_max = _int(data, "queue_max", 1, 10000, DEFAULT_QUEUE_MAX)
        self.log = bool(data.get("log", False))  # one console line per reading
        self.max_readings = _int(data, "max_readings", 0, 0xFFFFFFFF, 0)  # 0 = forever (tests, bench)
        self.wifi = data.get("wifi")
        if self.wifi is not None:
            _str(self.wifi, "ssid", prefix="wifi.")
            _str(self.wifi, "password", "", prefix="wifi.")
        self.webrepl = data.get("webrepl")
        if self.webrepl is not None:
            password = _str(self.webrepl, "password", prefix="webrepl.")
            if not 4 <= len(password) <= 9:  # webrepl's own limit
                raise _bad("webrepl.password", "4..9 characters", "<%d characters>" % len(password))

    def save(self):
        flashfs.write_atomic(PATH, json.dumps(self.data).encode())

    def set_interval(self, seconds):
        self.interval_s = self.data["interval_s"] = seconds
        self.save()

    def set_key(self, epoch, key):
        self.epoch = self.data["epoch"] = epoch
        self.key = key
        self.data["key"] = binascii.hexlify(key).decode()
        self.save()


def load(path=PATH):
    raw = flashfs.read_atomic(path)
    if raw is None:
        raise ConfigError("%s is missing: provision the board first (mpseal provision)" % path)
    try:
        data = json.loads(raw.decode())
    except ValueError:  # bad JSON or bad UTF-8
        raise ConfigError("%s is not valid JSON" % path)
    return Config(data)
