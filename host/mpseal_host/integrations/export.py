"""Readings of one device over a time range as CSV or JSON Lines: for
`mpseal export` and `GET /api/devices/{name}/export`.

Both page through storage (EXPORT_PAGE readings at a time, by seq), so an
export of years of readings never sits in memory; the receiver runs each
page in its read pool (integrations/routes.py), never on its event loop. CSV has one column per
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


def page(storage, device, start=None, end=None, after=0, limit=EXPORT_PAGE):
    """(readings with measured_at, the seq to continue after or None at the end)."""
    rows = storage.readings_between(device, start, end, after_seq=after, limit=limit)
    return [with_measured_at(row) for row in rows], (rows[-1]["seq"] if len(rows) == limit else None)


def iter_readings(storage, device, start=None, end=None, page_size=EXPORT_PAGE):
    after = 0
    while after is not None:
        readings, after = page(storage, device, start, end, after, page_size)
        yield from readings


def fields(storage, device, start, end):
    """The value fields over the range, in order of first appearance (the CSV's columns)."""
    found = {}
    for reading in iter_readings(storage, device, start, end):
        if isinstance(reading["value"], dict):
            for key in reading["value"]:
                found.setdefault(key, None)
        else:
            found.setdefault("value", None)
    return list(found)


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


def csv_header(columns):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(CSV_FIXED + [_safe_text(f) for f in columns])
    return buffer.getvalue()


def csv_rows(name, readings, columns):
    """CSV lines of readings of the device `name` (columns: fields())."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for r in readings:
        value = r["value"]
        values = value if isinstance(value, dict) else {"value": value}
        writer.writerow(
            [name, r["seq"], iso(r["measured_at"]), iso(r["received_at"]), r["time_source"], r["measured_at"],
             r["received_at"], r["transport"], r["format"]]
            + [_safe_text(_cell(values.get(f))) for f in columns]
        )
    return buffer.getvalue()


def jsonl_rows(name, readings):
    """JSON Lines: one reading object per line, with ISO times."""
    lines = [jsonsafe.dumps(dict(r, device=name, measured_at_iso=iso(r["measured_at"]),
                                 received_at_iso=iso(r["received_at"])), ensure_ascii=False) for r in readings]
    return "".join(line + "\n" for line in lines)


def start_export(storage, device, fmt, start=None, end=None):
    """(first text, columns) of an export; raises NoSuchDevice. Page on with
    export_page(). CSV needs its columns first: a pass over the range."""
    if fmt == "csv":
        columns = fields(storage, device, start, end)
        return csv_header(columns), columns
    if fmt == "jsonl":
        storage.readings_between(device, start, end, limit=1)  # NoSuchDevice before the first chunk
        return "", None
    raise ValueError("format must be one of %s" % ", ".join(FORMATS))


def export_page(storage, device, fmt, columns, start=None, end=None, after=0):
    """(text of up to EXPORT_PAGE readings, the seq to continue after or None)."""
    readings, after = page(storage, device, start, end, after)
    text = csv_rows(device, readings, columns) if fmt == "csv" else jsonl_rows(device, readings)
    return text, after


def chunks(storage, device, fmt, start=None, end=None):
    """The whole export as text chunks (header first); raises storage's
    NoSuchDevice before the first chunk (or mid-way, when removed)."""
    first, columns = start_export(storage, device, fmt, start, end)
    yield first
    after = 0
    while after is not None:
        text, after = export_page(storage, device, fmt, columns, start, end, after)
        yield text


def csv_chunks(storage, device, start=None, end=None):
    return chunks(storage, device, "csv", start, end)


def jsonl_chunks(storage, device, start=None, end=None):
    return chunks(storage, device, "jsonl", start, end)
