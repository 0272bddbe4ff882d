# Payload codec. First byte says the format:
#   0x00 raw bytes | 0x01 JSON (UTF-8) | 0x02 values
# Values: items of  key | type | big-endian signed integer
#   key  0x00-0x7F : numbered channel (CHANNELS in values.py, e.g. 0 = temperature)
#        0x81-0xFF : named, low 7 bits = name length, name bytes (ASCII) follow
#   type high nibble = integer width (0: 1 byte, 1: 2 bytes, 2: 4 bytes),
#        low nibble  = decimals d (0..9); value = integer / 10**d
# A temperature/humidity/battery reading is 13 bytes: one AES block.
import json
import struct

from mpseal.errors import BAD_PAYLOAD, InvalidPacket

# The encoder (the board's half) lives in values.py, so a board never loads
# the decoders below; these names keep `mpseal.payload` the whole codec.
from mpseal.values import CHANNELS as BOARD_CHANNELS
from mpseal.values import FORMAT_VALUES, MAX_DECIMALS, WIDTHS, encode_values  # noqa: F401

# The board's OTA status (docs/ota.md), in every reading of a board with
# update state: the release it runs, and 1 while that is on trial. Sent by
# number (values.py), named here, so the names never take board heap.
HOST_CHANNELS = (
    (9, "app_release", 0),
    (10, "app_on_trial", 0),
)
CHANNELS = BOARD_CHANNELS + HOST_CHANNELS


def channel(key):
    """(number, name, default decimals) of a known channel, by name or number; else None."""
    for known in CHANNELS:
        if key == known[1] or key == known[0]:
            return known
    return None

FORMAT_RAW = 0
FORMAT_JSON = 1


def decode_values(payload):
    """Returns a dict {name: int or float}; raises InvalidPacket(bad_payload)."""
    if not payload or payload[0] != FORMAT_VALUES:
        raise InvalidPacket(BAD_PAYLOAD, "not a values payload")
    values = {}
    i = 1
    n = len(payload)
    try:
        while i < n:
            key = payload[i]
            i += 1
            if key & 0x80:
                length = key & 0x7F
                if length == 0 or i + length > n:
                    raise InvalidPacket(BAD_PAYLOAD, "bad value name")
                name = bytes(payload[i : i + length]).decode()
                i += length
            else:
                known = channel(key)
                name = known[1] if known else "ch%d" % key
            if name in values:
                raise InvalidPacket(BAD_PAYLOAD, "value %r given twice" % name)
            if i >= n:
                raise InvalidPacket(BAD_PAYLOAD, "value type missing")
            kind = payload[i]
            i += 1
            code, decimals = kind >> 4, kind & 0x0F
            if code > 2 or decimals > MAX_DECIMALS:
                raise InvalidPacket(BAD_PAYLOAD, "bad value type 0x%02x" % kind)
            size, fmt = WIDTHS[code][0], WIDTHS[code][1]
            if i + size > n:
                raise InvalidPacket(BAD_PAYLOAD, "value truncated")
            scaled = struct.unpack(fmt, bytes(payload[i : i + size]))[0]
            i += size
            values[name] = scaled / 10**decimals if decimals else scaled
    except UnicodeError:
        raise InvalidPacket(BAD_PAYLOAD, "value name is not text")
    return values


def encode_values_exact(values):
    """The host's encoder (`mpseal seal --values`): `values` is a dict {name:
    number}; each number gets the fewest decimals (at least a known channel's
    default) that represent it exactly. Raises ValueError naming the first
    value that cannot be encoded exactly (docs/protocol.md section 6)."""
    if not isinstance(values, dict):
        raise ValueError("values must be an object of name: number, e.g. {\"temperature\": 21.5}")
    items = []
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("value %r of %r is not a number" % (value, key))
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("value of %r is not a finite number" % (key,))
        known = channel(key)
        for decimals in range((known[2] if known else 0), MAX_DECIMALS + 1):
            scaled = round(value * 10**decimals)
            if scaled / 10**decimals == value or (decimals == 0 and scaled == value):
                break
        else:
            raise ValueError("value %r of %r needs more than %d decimals" % (value, key, MAX_DECIMALS))
        if not WIDTHS[2][2] <= scaled <= WIDTHS[2][3]:
            raise ValueError("value %r of %r does not fit a signed 32-bit integer with %d decimals" % (value, key, decimals))
        items.append((key, value, decimals))
    encoded = encode_values(items)
    if decode_values(encoded) != {channel(k)[1] if channel(k) else k: v for k, v, _ in items}:
        raise ValueError("values cannot be encoded exactly")  # a float no decimal fraction survives
    return encoded


_VALUE_SIZES = (1, 2, 4)  # by width code: WIDTHS[code][0]


def validate(payload):
    """The format byte of a payload decode() accepts, checked without
    building its value (a host storing readings keeps the bytes and decodes
    them only when someone reads them). Raises InvalidPacket(bad_payload)
    exactly where decode() would."""
    if not payload:
        raise InvalidPacket(BAD_PAYLOAD, "empty payload")
    fmt = payload[0]
    if fmt == FORMAT_VALUES:
        i = 1
        n = len(payload)
        names = set()
        while i < n:
            key = payload[i]
            i += 1
            if key & 0x80:
                length = key & 0x7F
                if length == 0 or i + length > n:
                    raise InvalidPacket(BAD_PAYLOAD, "bad value name")
                try:
                    name = bytes(payload[i : i + length]).decode()
                except UnicodeError:
                    raise InvalidPacket(BAD_PAYLOAD, "value name is not text")
                i += length
            else:
                known = channel(key)
                name = known[1] if known else "ch%d" % key
            if name in names:
                raise InvalidPacket(BAD_PAYLOAD, "value %r given twice" % name)
            names.add(name)
            if i >= n:
                raise InvalidPacket(BAD_PAYLOAD, "value type missing")
            kind = payload[i]
            code = kind >> 4
            if code > 2 or kind & 0x0F > MAX_DECIMALS:
                raise InvalidPacket(BAD_PAYLOAD, "bad value type 0x%02x" % kind)
            i += 1 + _VALUE_SIZES[code]
            if i > n:
                raise InvalidPacket(BAD_PAYLOAD, "value truncated")
        return fmt
    if fmt == FORMAT_RAW:
        return fmt
    return decode(payload)[0]  # JSON: parsing it is the only check there is


def encode_raw(data):
    return bytes((FORMAT_RAW,)) + bytes(data)


def encode_json(obj):
    return bytes((FORMAT_JSON,)) + json.dumps(obj).encode()


def decode(payload):
    """Returns (format, value): raw -> bytes, json -> object, values -> dict."""
    if not payload:
        raise InvalidPacket(BAD_PAYLOAD, "empty payload")
    fmt = payload[0]
    if fmt == FORMAT_VALUES:
        return fmt, decode_values(payload)
    if fmt == FORMAT_RAW:
        return fmt, bytes(payload[1:])
    if fmt == FORMAT_JSON:
        try:
            return fmt, json.loads(bytes(payload[1:]).decode())
        except ValueError:  # includes UnicodeError and JSON decode errors
            raise InvalidPacket(BAD_PAYLOAD, "bad JSON")
    raise InvalidPacket(BAD_PAYLOAD, "unknown payload format %d" % fmt)
