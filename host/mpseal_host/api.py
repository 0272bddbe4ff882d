"""The JSON API on the API listener (docs/api.md). Every query runs in the
read pool (readers.py: worker processes, each with a read-only connection)
and returns encoded JSON, so neither SQLite nor decoding readings nor JSON
encoding runs in the process that receives packets. Query functions are
module-level (they are sent to the workers by name). Every JSON body goes
through integrations.jsonsafe: valid JSON whatever a device sent. Who may
call these routes is decided in one place, access.py's middleware, for
every route of the API app (the integrations' routes included)."""
import math

from aiohttp import web as aioweb

from mpseal.packet import MAX_SEQ
from mpseal_host.http_ingest import RECEIVER_KEY
from mpseal_host.integrations import jsonsafe, routes as integration_routes
from mpseal_host.integrations.timerange import BadTime, with_measured_at
from mpseal_host.storage import NoSuchDevice, StorageError

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000
JSON = "application/json"


def json_response(data, status=200):
    return aioweb.Response(text=jsonsafe.dumps(data), status=status, content_type=JSON)


def error(status, reason, **extra):
    return json_response(dict(error=reason, **extra), status=status)


def _encoded(value):
    return jsonsafe.dumps(value, separators=(",", ":")).encode()


def _json(body):
    return aioweb.Response(body=body, content_type=JSON)


def _devices(storage):
    # Public fields, latest reading, rejections, status and health (integrations/fleet.py).
    return _encoded({"devices": integration_routes.fleet_views(storage)})


async def devices(request):
    return _json(await request.app[RECEIVER_KEY].reads.run(_devices))


def _number(text, name, kind, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise aioweb.HTTPBadRequest(
            text=jsonsafe.dumps({"error": "bad_query", "detail": "%s must be a number from %s to %s" % (name, low, high)}),
            content_type=JSON,
        )
    return value


def _readings(storage, name, since, limit, start, end):
    try:
        if start is None and end is None:
            rows = storage.readings(name, since=since, limit=limit)
        else:  # a time range: the oldest `limit` in it, page on with since=
            rows = storage.readings_between(name, start, end, after_seq=since or 0, limit=limit)
    except NoSuchDevice:
        return None
    return _encoded({"device": name, "readings": [with_measured_at(r) for r in rows]})


async def readings(request):
    query = request.query
    since = _number(query["since"], "since", int, 0, MAX_SEQ) if "since" in query else None
    limit = _number(query.get("limit", DEFAULT_LIMIT), "limit", int, 1, MAX_LIMIT)
    name = request.match_info["name"]
    try:
        start, end = integration_routes.time_bounds(query)
    except BadTime as exc:
        return error(400, "bad_query", detail=str(exc))
    body = await request.app[RECEIVER_KEY].reads.run(_readings, name, since, limit, start, end)
    if body is None:
        return error(404, "unknown_device", device=name)
    return _json(body)


def _latest(storage):
    return _encoded({"latest": {name: with_measured_at(r) for name, r in storage.latest_readings().items()}})


async def latest(request):
    return _json(await request.app[RECEIVER_KEY].reads.run(_latest))


def _stats(storage):
    return storage.stats()


async def stats(request):
    receiver = request.app[RECEIVER_KEY]
    stats = await receiver.reads.run(_stats)
    stats["receiver"] = receiver.process_stats()
    return json_response(stats)


def _dashboard(storage, choice, uplot_url, process_stats):
    return _encoded(integration_routes.dashboard_data(integration_routes.StorageView(storage, process_stats), choice, uplot_url))


async def dashboard(request):
    """The page's one request (integrations.routes.dashboard_data), in the read pool."""
    choice = request.query.get("range", integration_routes.DEFAULT_RANGE)
    if choice not in integration_routes.RANGES_S:
        return integration_routes.bad_query("range must be one of %s" % ", ".join(integration_routes.RANGES_S))
    receiver = request.app[RECEIVER_KEY]
    return _json(await receiver.reads.run(_dashboard, choice, request.app.get("uplot_url"), receiver.process_stats()))


def _check(storage):
    """None when the database answers (a read worker's connection), else why not."""
    try:
        storage.check()
    except StorageError as exc:
        return str(exc)
    return None


async def changes(request):
    """An opaque token that changes whenever stored data does (any receiver):
    the page polls this and refetches only on a change."""
    # On the receiver's own read-only connection, never a worker's: SQLite's
    # data_version is per connection, so one connection must answer every poll.
    return json_response({"changes": await request.app[RECEIVER_KEY].change_token()})


async def healthz(request):
    receiver = request.app[RECEIVER_KEY]
    problem = await receiver.reads.run(_check)
    if problem:
        return json_response({"ok": False, "error": problem}, status=503)
    return json_response({
        "ok": True,
        "udp": list(receiver.udp_address or ()),
        "http": list(receiver.http_address or ()),
        "database": receiver.storage.location,
        "storage_waiting_for_lock": receiver.writer.waiting_for_lock,
    })


def add_routes(app):
    app.router.add_get("/api/devices", devices)
    app.router.add_get("/api/devices/{name}/readings", readings)
    app.router.add_get("/api/readings/latest", latest)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/changes", changes)
    app.router.add_get("/healthz", healthz)
    # integrations (docs/integrations.md), in the read pool too
    app.router.add_get("/metrics", integration_routes.metrics_handler)
    app.router.add_get("/api/dashboard", dashboard)
    app.router.add_get("/api/devices/{name}/export", integration_routes.export_handler)
