# The encoder of the values payload format (layout in payload.py and
# docs/protocol.md): the only part of the payload codec a board runs. It is its
# own module so a board never loads the decoders (payload.py), which only the
# host needs; payload.py re-exports everything here under the same names.
import struct

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
    (8, "synthetic", 0),  # 1 = made-up values (the firmware's synthetic sensor), never a measurement
)
# Channels a board gives by number only (an int key), named on the host
# (payload.py's HOST_CHANNELS: 9 app_release, 10 app_on_trial, docs/ota.md):
# their names never take board heap.
# type code (the high nibble) -> (bytes, struct format, lowest, highest)
WIDTHS = ((1, ">b", -0x80, 0x7F), (2, ">h", -0x8000, 0x7FFF), (4, ">i", -0x80000000, 0x7FFFFFFF))
MAX_DECIMALS = 9


def channel(key):
    """(number, name, default decimals) of a known channel, by name or number; else None."""
    for known in CHANNELS:
        if key == known[1] or key == known[0]:
            return known
    return None


def encode_values(values):
    """values: dict {name: number} or a list of (key, number) or
    (key, number, decimals); key is a channel name/number or any short ASCII
    name. Known channels use their default decimals."""
    items = values.items() if isinstance(values, dict) else values
    out = bytearray((FORMAT_VALUES,))
    for item in items:
        key, value = item[0], item[1]
        known = channel(key)
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
        elif isinstance(key, int) and 0 <= key < 0x80:
            out.append(key)  # a numbered channel the host names
        else:
            name = key.encode() if isinstance(key, str) else None
            if not name or len(name) > 127:
                raise ValueError("value name must be 1..127 ASCII characters: %r" % (key,))
            out.append(0x80 | len(name))
            out.extend(name)
        scaled = int(round(value * 10**decimals)) if decimals else int(round(value))
        for code in range(3):
            size, fmt, low, high = WIDTHS[code]
            if low <= scaled <= high:
                out.append((code << 4) | decimals)
                out.extend(struct.pack(fmt, scaled))
                break
        else:
            raise ValueError("value out of range: %r" % (value,))
    return bytes(out)
