"""HTTP handlers of the integrations: `/metrics`, `/api/dashboard` (the page's
one request) and `/api/devices/{name}/export`. Registered in api.py's route
table, so they sit behind whatever the API listener puts in front of it."""
import math
import time

from aiohttp import web as aioweb

from mpseal_host.integrations import export, jsonsafe, metrics
from mpseal_host.integrations.channels import NOT_SENSORS, unit
from mpseal_host.integrations.timerange import BadTime, measured, parse_time
from mpseal_host.storage import NoSuchDevice

RANGES_S = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
DEFAULT_RANGE = "1h"
CHART_POINTS = 240  # per device and range: a chart is ~300 px wide
MAX_CHARTED_DEVICES = 100  # beyond, the dashboard lists devices without series


def json_response(data, status=200):
    return aioweb.Response(text=jsonsafe.dumps(data), status=status, content_type="application/json")


def bad_query(detail):
    return json_response({"error": "bad_query", "detail": detail}, status=400)


def time_bounds(query):
    """(start, end) Unix seconds from ?from=&to= (ISO 8601 or epoch); BadTime."""
    start = parse_time(query["from"]) if "from" in query else None
    end = parse_time(query["to"]) if "to" in query else None
    if start is not None and end is not None and end < start:
        raise BadTime("`to` is before `from`")
    return start, end


async def metrics_handler(request):
    app = request.app
    if "metrics_registry" not in app:
        app["metrics_registry"] = metrics.registry_for(app["receiver"])
    body = metrics.render(app["metrics_registry"])
    return aioweb.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def series(readings):
    """{"t": [measured_at...], "fields": {name: [number or None]}}, sorted by
    time; non-finite and non-numeric values are gaps (None)."""
    rows = sorted(((measured(r)[0], r["value"] if isinstance(r["value"], dict) else {}) for r in readings),
                  key=lambda row: row[0])
    fields = {}
    for i, (_, values) in enumerate(rows):
        for name, v in values.items():
            kind = type(v)  # not isinstance: a bool is not a number here
            if (kind is int or (kind is float and math.isfinite(v))) and name not in NOT_SENSORS:
                column = fields.get(name)
                if column is None:
                    column = fields[name] = [None] * len(rows)
                column[i] = v
    return {"t": [row[0] for row in rows], "fields": fields}


def dashboard_data(receiver, choice, uplot_url=None, now=None):
    """Everything the page shows in one response: devices with status and
    health, their series over the range, totals and rejections."""
    storage = receiver.storage
    now = time.time() if now is None else now
    start = now - RANGES_S[choice]
    devices = receiver.fleet.devices()
    units = {}
    for i, device in enumerate(devices):
        if i < MAX_CHARTED_DEVICES:
            rows = storage.readings_between(device["id"], start, None, limit=CHART_POINTS + 1, max_points=CHART_POINTS)
            device["series"] = series(rows)
            for name in device["series"]["fields"]:
                if unit(name):
                    units[name] = unit(name)
        else:
            device["series"] = None
    return {
        "now": now,
        "range": choice,
        "from": start,
        "devices": devices,
        "stats": receiver.stats(),
        "units": units,
        "charted_devices": min(len(devices), MAX_CHARTED_DEVICES),
        "uplot": uplot_url,
    }


async def dashboard(request):
    choice = request.query.get("range", DEFAULT_RANGE)
    if choice not in RANGES_S:
        return bad_query("range must be one of %s" % ", ".join(RANGES_S))
    return json_response(dashboard_data(request.app["receiver"], choice, request.app.get("uplot_url")))


async def export_handler(request):
    storage = request.app["receiver"].storage
    name = request.match_info["name"]
    fmt = request.query.get("format", "csv")
    if fmt not in export.FORMATS:
        return bad_query("format must be one of %s" % ", ".join(export.FORMATS))
    try:
        start, end = time_bounds(request.query)
    except BadTime as exc:
        return bad_query(str(exc))
    if storage.get_device(name) is None:
        return json_response({"error": "unknown_device", "device": name}, status=404)
    content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = aioweb.StreamResponse(headers={
        "Content-Type": content_type + "; charset=utf-8",
        "Content-Disposition": 'attachment; filename="%s.%s"' % (name, fmt),
    })
    await response.prepare(request)
    try:
        for chunk in export.chunks(storage, name, fmt, start, end):
            await response.write(chunk.encode())
    except NoSuchDevice:  # removed while exporting: the file ends here
        pass
    await response.write_eof()
    return response
