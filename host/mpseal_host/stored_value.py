"""The `value` a stored reading keeps (JSON text: storage/model.py
value_json), made from the payload bytes at ingest, checked as decode()
checks them (raises InvalidPacket(bad_payload) where it does).

The common packet is a values payload whose layout (which values, how wide,
how many decimals) repeats: a fleet sends a handful of layouts, and only the
numbers change. The first payload of a layout is decoded the ordinary way
(mpseal.payload.decode, then value_json) and its layout compiled: the
positions and bytes of everything but the numbers, one struct format for the
numbers, a JSON template. A later payload whose length and bytes at those
positions are the same is that layout with other numbers, so it is valid
and its JSON is the template filled in: no dict, no json.dumps, the same
text byte for byte (tests/test_receiver_pipeline.py compares the two on
random payloads). The device's last layout is tried first; else the layout
is looked up by its signature (LAYOUTS, bounded). JSON and raw payloads go
the ordinary way.
"""
import json
import operator
import struct

from mpseal.payload import FORMAT_VALUES, WIDTHS, channel, decode
from mpseal_host.storage.model import value_json


class Layout:
    __slots__ = ("size", "fixed", "expected", "unpack", "template", "divisors")

    def __init__(self, payload):
        """Compiles the layout of a values payload decode() accepted."""
        positions = [0]
        numbers = ">x"  # the format byte
        names = []
        divisors = []
        i, n = 1, len(payload)
        while i < n:
            key = payload[i]
            positions.append(i)
            i += 1
            if key & 0x80:
                length = key & 0x7F
                names.append(bytes(payload[i : i + length]).decode())
                positions.extend(range(i, i + length))
                numbers += "%dx" % (1 + length)
                i += length
            else:
                known = channel(key)
                names.append(known[1] if known else "ch%d" % key)
                numbers += "x"
            kind = payload[i]
            positions.append(i)
            numbers += "x" + WIDTHS[kind >> 4][1][1:]
            i += 1 + WIDTHS[kind >> 4][0]
            decimals = kind & 0x0F
            divisors.append(10**decimals if decimals else 0)
        self.size = n
        self.fixed = operator.itemgetter(*positions)
        self.expected = self.fixed(payload)
        self.unpack = struct.Struct(numbers).unpack
        # json.dumps writes an int with int.__repr__ and a float with
        # float.__repr__: "%r" is both. Names are escaped as json.dumps does.
        self.template = "{%s}" % ",".join(json.dumps(name).replace("%", "%%") + ":%r" for name in names)
        self.divisors = divisors

    def json(self, payload):
        """The value JSON of a payload with this layout, else None."""
        if len(payload) != self.size or self.fixed(payload) != self.expected:
            return None
        return self.template % tuple([v / d if d else v for v, d in zip(self.unpack(payload), self.divisors)])


MAX_LAYOUTS = 4096
LAYOUTS = {}  # signature -> Layout


def signature(payload):
    """Length and the bytes that are not numbers of a values payload (they
    fix the layout), or None when it is none (decode() then says why)."""
    n = len(payload)
    if not n or payload[0] != FORMAT_VALUES:
        return None
    fixed = bytearray()
    i = 1
    while i < n:
        key = payload[i]
        if key & 0x80:
            end = i + 1 + (key & 0x7F)
            fixed += payload[i:end]
            i = end
        else:
            fixed.append(key)
            i += 1
        if i >= n:
            return None
        kind = payload[i]
        fixed.append(kind)
        if kind >> 4 > 2:
            return None
        i += 1 + WIDTHS[kind >> 4][0]
    return (n, bytes(fixed))


def stored_value(payload, layout=None):
    """(format byte, value JSON text, layout to pass next time) of a
    payload; raises InvalidPacket(bad_payload) as decode() does. `layout`:
    what the previous call for the same device returned (or None)."""
    if layout is not None:
        text = layout.json(payload)
        if text is not None:
            return FORMAT_VALUES, text, layout
    key = signature(payload)
    layout = LAYOUTS.get(key) if key is not None else None
    if layout is not None:
        text = layout.json(payload)
        if text is not None:  # (always, unless the signature check is wrong)
            return FORMAT_VALUES, text, layout
    fmt, value = decode(payload)
    if fmt == FORMAT_VALUES:
        layout = Layout(payload)
        if len(LAYOUTS) >= MAX_LAYOUTS:
            LAYOUTS.clear()
        LAYOUTS[key] = layout
    return fmt, value_json(value), layout
