"""The whole /config.json checked on the host, before it goes to a board.

The board checks its file too (firmware/config.py), but briefly: its code
must stay small, it reports on a serial console nobody watches, and it lets
keys it does not know pass (other transports' sections). Here every key is
known: an unknown key (a typo such as `sensor:`) is refused, every value has
its type and range checked, and the error names the key:

    ConfigCheckError: config key 'sensors[0].type': must be one of battery,
    dht11, dht22, ds18b20, synthetic (got 'dht23')

SCHEMA below is the table of keys (docs/design.md, docs/firmware.md "Config
keys"); a new transport or feature that reads a new key adds it here.
Sensor type names and transport names come from the firmware itself
(firmware/config.py _SENSOR_TYPES, firmware/transport_*.py), their one owner.
"""
import ast
import os
import re

from mpseal_host.errors import MpsealError

from mpseal_tools.paths import FIRMWARE_DIR
MAX_U32 = 0xFFFFFFFF
MAX_GPIO = 16


class ConfigCheckError(MpsealError):
    pass


def sensor_types(firmware_dir=FIRMWARE_DIR):
    """The sensor type names the firmware knows: firmware/config.py
    _SENSOR_TYPES = const("...") (read, not imported: it is board code)."""
    with open(os.path.join(firmware_dir, "config.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["_SENSOR_TYPES"]:
            return tuple(sorted(ast.literal_eval(node.value.args[0]).split()))
    raise ConfigCheckError("firmware/config.py has no _SENSOR_TYPES: cannot check sensor types")


def transport_names(firmware_dir=FIRMWARE_DIR):
    """The transports the firmware has: firmware/transport_<name>.py."""
    return tuple(sorted(n[len("transport_"):-3] for n in os.listdir(firmware_dir)
                        if n.startswith("transport_") and n.endswith(".py")))


# --- value checks: each returns an error text, or None when the value is fine --

def _int(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer (got %r)" % (value,)
        if not low <= value <= high:
            return "must be an integer %d..%d (got %d)" % (low, high, value)
    return check


def _number(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number (got %r)" % (value,)
        if not low < value <= high:
            return "must be a number above %g and at most %g (got %g)" % (low, high, value)
    return check


def _text(min_len=0, max_len=1000, secret=False):
    def check(value):
        if not isinstance(value, str):
            return "must be a string (got %s)" % ("a %s" % type(value).__name__ if secret else repr(value))
        if not min_len <= len(value) <= max_len:
            shown = "%d characters" % len(value) if secret else repr(value)
            return "must be %d..%d characters (got %s)" % (min_len, max_len, shown)
    return check


def _choice(*choices):
    def check(value):
        if value not in choices:
            return "must be one of %s (got %r)" % (", ".join(choices), value)
    return check


def _bool(value):
    if not isinstance(value, bool):
        return "must be true or false (got %r)" % (value,)


def _key(value):
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return "must be 64 hex digits (the 32-byte device key)"  # never the value: it is the key


def _phone(value):
    if not isinstance(value, str) or not re.fullmatch(r"\+?[0-9 ]{3,20}", value):
        return "must be a phone number like \"+4915112345678\" (got %r)" % (value,)


# key -> (check, required); sections are dicts of the same form
WIFI = {"ssid": (_text(1, 32), True), "password": (_text(0, 64, secret=True), False)}
RECEIVER = {"host": (_text(1, 253), True), "udp_port": (_int(1, 65535), False), "http_port": (_int(1, 65535), False)}
WEBREPL = {"password": (_text(4, 9, secret=True), True)}  # webrepl's own limit
SMS = {"host_number": (_phone, True), "uart": (_int(0, 1), False), "baud": (_int(300, 115200), False),
       "ack_timeout_s": (_int(1, 3600), False)}
SCHEMA = {
    "device_id": (_int(0, MAX_U32), True),
    "name": (_text(0, 64), False),
    "key": (_key, True),
    "epoch": (_int(0, 255), False),
    "receiver": (RECEIVER, True),
    "wifi": (WIFI, False),
    "webrepl": (WEBREPL, False),
    "transports": ("transports", False),
    "sensors": ("sensors", False),
    "sms": (SMS, False),
    "interval_s": (_int(0, MAX_U32), False),
    "power": (_choice("always-on", "interval"), False),
    "queue_max": (_int(1, 10000), False),
    "log": (_bool, False),
    "max_readings": (_int(0, MAX_U32), False),
}
# sensor type -> its keys besides "type"
PIN = (_int(0, MAX_GPIO), True)
SENSOR_KEYS = {
    "synthetic": {},
    "dht11": {"pin": PIN},
    "dht22": {"pin": PIN},
    "ds18b20": {"pin": PIN},
    "battery": {"volts_full_scale": (_number(0, 40), False)},
}


def _fail(path, text):
    raise ConfigCheckError("config key '%s': %s" % (path, text))


def _section(path, value, schema):
    if not isinstance(value, dict):
        _fail(path or "(top level)", "must be a mapping of keys to values (got %r)" % (value,))
    prefix = path + "." if path else ""
    for key in value:
        if key not in schema:
            _fail(prefix + str(key), "unknown key (known here: %s)" % ", ".join(sorted(schema)))
    for key, (check, required) in schema.items():
        if key not in value:
            if required:
                _fail(prefix + key, "is required")
            continue
        if isinstance(check, dict):
            _section(prefix + key, value[key], check)
        elif check == "transports":
            _transports(prefix + key, value[key])
        elif check == "sensors":
            _sensors(prefix + key, value[key])
        else:
            problem = check(value[key])
            if problem:
                _fail(prefix + key, problem)


def _transports(path, value):
    known = transport_names()
    if not isinstance(value, list) or not value:
        _fail(path, "must be a non-empty list of transport names (known: %s)" % ", ".join(known))
    for index, name in enumerate(value):
        if name not in known:
            _fail("%s[%d]" % (path, index), "must be one of %s (got %r)" % (", ".join(known), name))
    if len(set(value)) != len(value):
        _fail(path, "names a transport twice (%s)" % ", ".join(value))


def _sensors(path, value):
    types = sensor_types()
    if not isinstance(value, list):
        _fail(path, "must be a list of sensor objects like {type: dht22, pin: 4}")
    for index, spec in enumerate(value):
        where = "%s[%d]" % (path, index)
        if not isinstance(spec, dict):
            _fail(where, "must be a mapping like {type: dht22, pin: 4} (got %r)" % (spec,))
        if spec.get("type") not in types:
            _fail(where + ".type", "must be one of %s (got %r)" % (", ".join(types), spec.get("type")))
        keys = dict(SENSOR_KEYS.get(spec["type"], {}), type=(_choice(*types), True))
        _section(where, spec, keys)


def check_config(config):
    """Raises ConfigCheckError naming the first bad key of the /config.json
    dict `config`; returns it unchanged when every key is right."""
    _section("", config, SCHEMA)
    transports = config.get("transports", ["udp"])
    if "sms" in transports and "sms" not in config:
        _fail("sms", "is required when transports has sms (host_number: the receiving modem's number)")
    return config


# --- `--sensor TYPE[:PIN]` from the command line -----------------------------

def parse_sensor(text, board=None):
    """{"type": ..., ...} for a --sensor argument: "dht22:D2" (a pin name
    from the board's boards.yaml pin_names), "dht22:4" or "dht22:GPIO4",
    "dht22" (the board's pins.dht), "ds18b20:D5", "battery", "battery:4.2"
    (full-scale volts of the A0 divider), "synthetic"."""
    kind, _, arg = text.partition(":")
    types = sensor_types()
    if kind not in types:
        raise ConfigCheckError("--sensor %s: unknown sensor type %r (known: %s)" % (text, kind, ", ".join(types)))
    spec = {"type": kind}
    keys = SENSOR_KEYS.get(kind, {})
    if "pin" in keys:
        spec["pin"] = _pin(text, arg, kind, board)
    elif kind == "battery" and arg:
        try:
            spec["volts_full_scale"] = float(arg)
        except ValueError:
            raise ConfigCheckError("--sensor %s: the battery's argument is the full-scale voltage of A0, e.g. "
                                   "battery:4.2 (got %r)" % (text, arg))
    elif arg:
        raise ConfigCheckError("--sensor %s: %s takes no argument" % (text, kind))
    return spec


def _pin(text, arg, kind, board):
    names = board.pin_names if board is not None else {}
    board_name = board.name if board is not None else "the board"
    if not arg:
        default = board.pins.get("dht" if kind.startswith("dht") else kind) if board is not None else None
        if default is None:
            raise ConfigCheckError("--sensor %s: which pin? e.g. --sensor %s:%s (pins of %s: %s)"
                                   % (text, kind, next(iter(names), "4"), board_name, ", ".join(names) or "GPIO numbers"))
        return default
    if arg in names:
        return names[arg]
    number = arg[4:] if arg.upper().startswith("GPIO") else arg
    if number.isdigit() and 0 <= int(number) <= MAX_GPIO:
        return int(number)
    raise ConfigCheckError("--sensor %s: %r is no pin of %s (names: %s; or a GPIO number 0..%d)"
                           % (text, arg, board_name, ", ".join(names) or "none in boards.yaml", MAX_GPIO))
