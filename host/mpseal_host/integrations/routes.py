"""HTTP handlers of the integrations: `/metrics`, `/api/dashboard` (the page's
one request) and `/api/devices/{name}/export`. Registered in api.py's route
table, so they sit behind whatever the API listener puts in front of it.

Their queries run in the receiver's read pool (readers.py), never on its
event loop: module-level functions of a read-only Storage (sent to a worker
by name) that return what the loop sends as is. What they need of the
receiver process (its counters, the MQTT publisher's) goes along as
arguments; StorageView puts it together with the worker's storage."""
import math
import time

from aiohttp import web as aioweb

from mpseal_host.integrations import export, jsonsafe, metrics
from mpseal_host.integrations.channels import NOT_SENSORS, unit
from mpseal_host.integrations.fleet import Fleet
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


_fleets = {}  # per process (a read worker): its storage -> Fleet (interval estimates cached)


def fleet_of(storage):
    fleet = _fleets.get(id(storage))
    if fleet is None or fleet.storage is not storage:
        fleet = _fleets[id(storage)] = Fleet(storage)
    return fleet


class _Stats:
    def __init__(self, stats):
        self._stats = stats

    def stats(self):
        return self._stats


class StorageView:
    """What dashboard_data and the /metrics collector read of a receiver,
    where the query runs: a storage, its fleet, and the receiver process's
    counters (and MQTT publisher's stats) sent along."""

    def __init__(self, storage, process_stats, started_at=None, mqtt_stats=None):
        self.storage = storage
        self.fleet = fleet_of(storage)
        self.process_stats = process_stats
        self.started_at = started_at
        self.mqtt = None if mqtt_stats is None else _Stats(mqtt_stats)

    def stats(self):
        stats = self.storage.stats()
        stats["receiver"] = self.process_stats
        return stats


def fleet_views(storage):
    """The fleet's status per device (fleet.Fleet.devices()), in a read worker."""
    return fleet_of(storage).devices()


def _metrics(storage, process_stats, started_at, mqtt_stats):
    return metrics.render(metrics.registry_for(StorageView(storage, process_stats, started_at, mqtt_stats)))


async def metrics_handler(request):
    receiver = request.app["receiver"]
    mqtt = receiver.mqtt.stats() if receiver.mqtt is not None else None
    body = await receiver.reads.run(_metrics, receiver.process_stats(), receiver.started_at, mqtt)
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
    health, their series over the range, totals and rejections. `receiver`:
    a StorageView (in a read worker)."""
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


def _export_start(storage, name, fmt, start, end):
    try:
        return export.start_export(storage, name, fmt, start, end)
    except NoSuchDevice:
        return None


def _export_page(storage, name, fmt, columns, start, end, after):
    try:
        return export.export_page(storage, name, fmt, columns, start, end, after)
    except NoSuchDevice:  # removed while exporting
        return None


async def export_handler(request):
    reads = request.app["receiver"].reads
    name = request.match_info["name"]
    fmt = request.query.get("format", "csv")
    if fmt not in export.FORMATS:
        return bad_query("format must be one of %s" % ", ".join(export.FORMATS))
    try:
        start, end = time_bounds(request.query)
    except BadTime as exc:
        return bad_query(str(exc))
    first = await reads.run(_export_start, name, fmt, start, end)
    if first is None:
        return json_response({"error": "unknown_device", "device": name}, status=404)
    text, columns = first
    content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = aioweb.StreamResponse(headers={
        "Content-Type": content_type + "; charset=utf-8",
        "Content-Disposition": 'attachment; filename="%s.%s"' % (name, fmt),
    })
    await response.prepare(request)
    if text:
        await response.write(text.encode())
    after = 0
    while after is not None:  # a page (EXPORT_PAGE readings) per read-pool call
        page = await reads.run(_export_page, name, fmt, columns, start, end, after)
        if page is None:  # the device was removed while exporting: the file ends here
            break
        text, after = page
        if text:
            await response.write(text.encode())
    await response.write_eof()
    return response
