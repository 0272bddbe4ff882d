"""JSON that every client can parse, whatever a device sent.

A device-key holder can send a JSON payload with NaN or Infinity (Python's
json accepts them); `json.dumps` would write them as bare `NaN`, which is not
JSON, and one such reading would break `/api/devices` for every device. Here
a non-finite float becomes the string "NaN", "Infinity" or "-Infinity" (the
reading is shown as sent, and a chart skips it because it is not a number).
"""
import json
import math

NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else NON_FINITE[repr(obj)]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def finite(obj):
    """obj with every non-finite float replaced by its name (a string)."""
    return _finite(obj)


def dumps(obj, **kwargs):
    """json.dumps that never writes NaN/Infinity (the common case costs one dumps)."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(obj), allow_nan=False, **kwargs)
