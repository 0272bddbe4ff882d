"""HTTP routes: packet ingest and the JSON API (docs/api.md). Every JSON
body goes through integrations.jsonsafe: valid JSON whatever a device sent."""
import logging
import math

from aiohttp import web as aioweb

from mpseal.packet import MAX_PACKET_SIZE, MAX_SEQ
from mpseal_host.integrations import jsonsafe, routes as integration_routes
from mpseal_host.integrations.timerange import BadTime, with_measured_at
from mpseal_host.pipeline import REJECTED
from mpseal_host.rejections import BAD_CONTENT_TYPE, http_status
from mpseal_host.storage import NO_DEVICE, NoSuchDevice, StorageError

log = logging.getLogger("mpseal.receiver")

PACKET_TYPE = "application/octet-stream"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10000


def json_response(data, status=200):
    return aioweb.Response(text=jsonsafe.dumps(data), status=status, content_type="application/json")


def error(status, reason, **extra):
    return json_response(dict(error=reason, **extra), status=status)


async def ingest(request):
    receiver = request.app["receiver"]
    if request.content_type != PACKET_TYPE:
        receiver.storage.count_rejection(NO_DEVICE, BAD_CONTENT_TYPE)
        log.warning("rejected http body from %s: bad_content_type %r", request.remote, request.content_type)
        return error(http_status(BAD_CONTENT_TYPE), BAD_CONTENT_TYPE, detail="send the packet bytes as %s" % PACKET_TYPE)
    # Read one byte past the limit, never the whole body of a flood: the
    # pipeline then refuses it as oversize (and counts it).
    packet = await request.content.read(MAX_PACKET_SIZE + 1)
    outcome, ack = await receiver.submit(packet, request.remote)
    if outcome.status == REJECTED:
        return error(http_status(outcome.reason), outcome.reason)
    if ack is None:  # stored (or a duplicate) but not answered: over the re-ack budget, or no host seq left
        return error(429, "no_ack", detail="try again later")
    return aioweb.Response(body=ack, content_type=PACKET_TYPE, headers={"X-Mpseal-Status": outcome.status})


async def devices(request):
    # Public fields, latest reading, rejections, status from the device's own
    # interval and health fields (integrations/fleet.py).
    return json_response({"devices": request.app["receiver"].fleet.devices()})


def _number(text, name, kind, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise aioweb.HTTPBadRequest(
            text=jsonsafe.dumps({"error": "bad_query", "detail": "%s must be a number from %s to %s" % (name, low, high)}),
            content_type="application/json",
        )
    return value


async def readings(request):
    storage = request.app["receiver"].storage
    query = request.query
    since = _number(query["since"], "since", int, 0, MAX_SEQ) if "since" in query else None
    limit = _number(query.get("limit", DEFAULT_LIMIT), "limit", int, 1, MAX_LIMIT)
    name = request.match_info["name"]
    try:
        start, end = integration_routes.time_bounds(query)
    except BadTime as exc:
        return error(400, "bad_query", detail=str(exc))
    try:
        if start is None and end is None:
            rows = storage.readings(name, since=since, limit=limit)
        else:  # a time range: the oldest `limit` in it, page on with since=
            rows = storage.readings_between(name, start, end, after_seq=since or 0, limit=limit)
    except NoSuchDevice:
        return error(404, "unknown_device", device=name)
    return json_response({"device": name, "readings": [with_measured_at(r) for r in rows]})


async def latest(request):
    readings = request.app["receiver"].storage.latest_readings()
    return json_response({"latest": {name: with_measured_at(r) for name, r in readings.items()}})


async def stats(request):
    return json_response(request.app["receiver"].stats())


async def changes(request):
    """An opaque token that changes whenever stored data does (any receiver):
    the page polls this and refetches only on a change."""
    return json_response({"changes": request.app["receiver"].storage.change_token()})


async def healthz(request):
    receiver = request.app["receiver"]
    try:
        receiver.storage.check()
    except StorageError as exc:
        return json_response({"ok": False, "error": str(exc)}, status=503)
    return json_response({"ok": True, "udp": list(receiver.udp_address or ()), "database": receiver.storage.location})


def add_routes(app):
    app.router.add_post("/api/ingest", ingest)
    app.router.add_get("/api/devices", devices)
    app.router.add_get("/api/devices/{name}/readings", readings)
    app.router.add_get("/api/readings/latest", latest)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/changes", changes)
    app.router.add_get("/healthz", healthz)
    # integrations (docs/integrations.md)
    app.router.add_get("/metrics", integration_routes.metrics_handler)
    app.router.add_get("/api/dashboard", integration_routes.dashboard)
    app.router.add_get("/api/devices/{name}/export", integration_routes.export_handler)
