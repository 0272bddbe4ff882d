# Payload codec. First byte says the format:
#   0x00 raw bytes | 0x01 JSON (UTF-8) | 0x02 values
# Values: items of  key | type | big-endian signed integer
#   key  0x00-0x7F : numbered channel (CHANNELS below, e.g. 0 = temperature)
#        0x81-0xFF : named, low 7 bits = name length, name bytes (ASCII) follow
#   type high nibble = integer width (0: 1 byte, 1: 2 bytes, 2: 4 bytes),
#        low nibble  = decimals d (0..9); value = integer / 10**d
# A temperature/humidity/battery reading is 13 bytes: one AES block.
import json
import struct

from mpseal.errors import BAD_PAYLOAD, InvalidPacket

FORMAT_RAW = 0
FORMAT_JSON = 1
FORMAT_VALUES = 2

# channel number, name, default decimals (units in docs/protocol.md)
CHANNELS = (
    (0, "temperature", 2),  # degrees Celsius
    (1, "humidity", 1),  # percent relative humidity
    (2, "battery", 3),  # volts
    (3, "pressure", 1),  # hPa
    (4, "age", 0),  # seconds between measuring and sending (store-and-forward)
    (5, "light", 0),  # lux
    (6, "co2", 0),  # ppm
    (7, "rssi", 0),  # dBm of the link the board used
)
_WIDTHS = ((1, ">b", -0x80, 0x7F), (2, ">h", -0x8000, 0x7FFF), (4, ">i", -0x80000000, 0x7FFFFFFF))
MAX_DECIMALS = 9


def _channel(key):
    for number, name, decimals in CHANNELS:
        if key == name or key == number:
            return number, name, decimals
    return None


def encode_values(values):
    """values: dict {name: number} or a list of (key, number) or
    (key, number, decimals); key is a channel name/number or any short ASCII
    name. Known channels use their default decimals."""
    items = values.items() if isinstance(values, dict) else values
    out = bytearray((FORMAT_VALUES,))
    for item in items:
        key, value = item[0], item[1]
        known = _channel(key)
        if len(item) > 2:
            decimals = item[2]
        elif known:
            decimals = known[2]
        else:
            decimals = 0 if isinstance(value, int) else 2
        if not 0 <= decimals <= MAX_DECIMALS:
            raise ValueError("decimals must be 0..9")
        if known:
            out.append(known[0])
        else:
            name = key.encode() if isinstance(key, str) else None
            if not name or len(name) > 127:
                raise ValueError("value name must be 1..127 ASCII characters: %r" % (key,))
            out.append(0x80 | len(name))
            out.extend(name)
        scaled = int(round(value * 10**decimals)) if decimals else int(round(value))
        for code in range(3):
            size, fmt, low, high = _WIDTHS[code]
            if low <= scaled <= high:
                out.append((code << 4) | decimals)
                out.extend(struct.pack(fmt, scaled))
                break
        else:
            raise ValueError("value out of range: %r" % (value,))
    return bytes(out)


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
                known = _channel(key)
                name = known[1] if known else "ch%d" % key
            if i >= n:
                raise InvalidPacket(BAD_PAYLOAD, "value type missing")
            kind = payload[i]
            i += 1
            code, decimals = kind >> 4, kind & 0x0F
            if code > 2 or decimals > MAX_DECIMALS:
                raise InvalidPacket(BAD_PAYLOAD, "bad value type 0x%02x" % kind)
            size, fmt = _WIDTHS[code][0], _WIDTHS[code][1]
            if i + size > n:
                raise InvalidPacket(BAD_PAYLOAD, "value truncated")
            scaled = struct.unpack(fmt, bytes(payload[i : i + size]))[0]
            i += size
            values[name] = scaled / 10**decimals if decimals else scaled
    except UnicodeError:
        raise InvalidPacket(BAD_PAYLOAD, "value name is not text")
    return values


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
