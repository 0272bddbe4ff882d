# config.py: a good file loads with the documented defaults; every bad key is
# named in the error. Run under micropython with the flash folder at /.
import json

import config
from fw_check import raises, read, write

KEY = "00" * 32
GOOD = {"device_id": 3, "key": KEY, "receiver": {"host": "127.0.0.1"}}


def load(d):
    write("/config.json", json.dumps(d).encode())
    return config.load()


cfg = load(GOOD)
assert (cfg.udp_port, cfg.http_port, cfg.interval_s, cfg.power, cfg.transports, cfg.epoch) == (4740, 8740, 60, "always-on", ["udp"], 0)
assert cfg.key == bytes(32) and cfg.queue_max == 100
print("ok defaults")
cfg = load(dict(GOOD, sensors=[{"type": "dht22", "pin": 2}, {"type": "battery"}, {"type": "ds18b20", "pin": 5}]))
assert [s["type"] for s in cfg.sensors] == ["dht22", "battery", "ds18b20"]
print("ok sensors")

BAD = (
    ("device_id", {"device_id": "3"}),
    ("key", {"key": "abc"}),
    ("key", {"key": "zz" * 32}),
    ("receiver", {"receiver": "127.0.0.1"}),
    ("receiver.udp_port", {"receiver": {"host": "h", "udp_port": 70000}}),
    ("receiver.host", {"receiver": {"udp_port": 1}}),
    ("transports", {"transports": []}),
    ("power", {"power": "turbo"}),
    ("interval_s", {"interval_s": -1}),
    ("epoch", {"epoch": 256}),
    ("sensors", {"sensors": [{"pin": 4}]}),
    ("sensors[1].type", {"sensors": [{"type": "battery"}, {"type": "dht23", "pin": 4}]}),
    ("sensors[0].pin", {"sensors": [{"type": "dht22"}]}),
    ("sensors[0].pin", {"sensors": [{"type": "ds18b20", "pin": 17}]}),
    ("sensors[0].pin", {"sensors": [{"type": "dht11", "pin": "D2"}]}),
    ("webrepl.password", {"webrepl": {"password": "far-too-long-password"}}),
    ("wifi.ssid", {"wifi": {"password": "x"}}),
)
for key, change in BAD:
    d = dict(GOOD)
    d.update(change)
    message = raises(config.ConfigError, load, d)
    assert ("'%s'" % key) in message, (key, message)
    assert KEY not in message  # the key itself is never printed
    print("ok bad", key)

d = dict(GOOD)
del d["device_id"]
assert "'device_id'" in raises(config.ConfigError, load, d)
write("/config.json", b"{not json")
assert "not valid JSON" in raises(config.ConfigError, config.load)
import os

os.remove("/config.json")
assert "provision" in raises(config.ConfigError, config.load)
print("ok missing and broken file")

d = dict(GOOD)
d["sms"] = {"host_number": "+49"}  # a section this module does not know
load(d)
import settings  # commands that change settings write them back

settings.save({"interval_s": 7})
assert json.loads(read("/config.json"))["interval_s"] == 7 and config.load().interval_s == 7
settings.save({"epoch": 2, "key": bytes(range(32))})
again = config.load()
assert again.epoch == 2 and again.key == bytes(range(32)) and again.interval_s == 7
assert json.loads(read("/config.json"))["sms"] == {"host_number": "+49"}
print("ok commands write the file back, unknown sections kept")

# The checked settings are plain values: nothing in them refers back to the
# module, so app.py can unload the checking code after boot.
import gc
import sys


def forget_config():
    global config
    del sys.modules["config"]
    del config
    gc.collect()


forget_config()
before = gc.mem_alloc()
import config  # noqa: E402

kept = config.load()
forget_config()
kept_bytes = gc.mem_alloc() - before
assert kept.device_id == 3 and kept_bytes < 2000, kept_bytes  # the module itself is ~5 KB
print("ok config unloads, the settings stay (%d bytes kept)" % kept_bytes)
