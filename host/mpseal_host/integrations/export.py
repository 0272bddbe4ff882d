"""Readings of one device over a time range as CSV or JSON Lines: for
`mpseal export` and `GET /api/devices/{name}/export`.

Both page through storage (EXPORT_PAGE readings at a time, by seq), so an
export of years of readings never sits in memory. CSV has one column per
value field; the field names are collected in a first pass over the range,
so every row has the same columns. Times are ISO 8601 UTC plus the Unix
seconds; `measured_at` / `time_source` as in timerange.py.
"""
import csv
import io
import math

from mpseal_host.integrations import jsonsafe
from mpseal_host.integrations.timerange import iso, with_measured_at

EXPORT_PAGE = 2000
FORMATS = ("csv", "jsonl")
CSV_FIXED = ["device", "seq", "measured_at", "received_at", "time_source", "measured_at_unix", "received_at_unix", "transport", "format"]


def iter_readings(storage, device, start=None, end=None, page=EXPORT_PAGE):
    after = 0
    while True:
        rows = storage.readings_between(device, start, end, after_seq=after, limit=page)
        for row in rows:
            yield with_measured_at(row)
        if len(rows) < page:
            return
        after = rows[-1]["seq"]


def _fields(storage, device, start, end):
    fields = {}
    for reading in iter_readings(storage, device, start, end):
        if isinstance(reading["value"], dict):
            for key in reading["value"]:
                fields.setdefault(key, None)
        else:
            fields.setdefault("value", None)
    return list(fields)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return jsonsafe.dumps(value)
    if isinstance(value, float):
        return jsonsafe.finite(value) if not math.isfinite(value) else repr(value)
    return str(value)


def _safe_text(text):
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV
    # injection); names and strings come from devices.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number_text(text) else text


def _is_number_text(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_chunks(storage, device, start=None, end=None):
    """CSV text in chunks (header first) of the device named `device`;
    raises storage's NoSuchDevice before the first chunk."""
    name = device
    fields = _fields(storage, device, start, end)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIXED + [_safe_text(f) for f in fields])
    n = 0
    for r in iter_readings(storage, device, start, end):
        value = r["value"]
        values = value if isinstance(value, dict) else {"value": value}
        writer.writerow(
            [name, r["seq"], iso(r["measured_at"]), iso(r["received_at"]), r["time_source"], r["measured_at"],
             r["received_at"], r["transport"], r["format"]]
            + [_safe_text(_cell(values.get(f))) for f in fields]
        )
        n += 1
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_chunks(storage, device, start=None, end=None):
    """JSON Lines in chunks: one reading object per line, with ISO times."""
    name = device
    lines = []
    for r in iter_readings(storage, device, start, end):
        r = dict(r, device=name, measured_at_iso=iso(r["measured_at"]), received_at_iso=iso(r["received_at"]))
        lines.append(jsonsafe.dumps(r, ensure_ascii=False))
        if len(lines) >= 500:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def chunks(storage, device, fmt, start=None, end=None):
    if fmt == "csv":
        return csv_chunks(storage, device, start, end)
    if fmt == "jsonl":
        return jsonl_chunks(storage, device, start, end)
    raise ValueError("format must be one of %s" % ", ".join(FORMATS))
