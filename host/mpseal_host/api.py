"""HTTP routes: packet ingest and the JSON API (docs/api.md)."""
import json
import math

import logging

from aiohttp import web as aioweb

from mpseal.packet import MAX_PACKET_SIZE, MAX_SEQ
from mpseal_host.pipeline import REJECTED
from mpseal_host.rejections import BAD_CONTENT_TYPE, http_status
from mpseal_host.storage import NO_DEVICE, NoSuchDevice

log = logging.getLogger("mpseal.receiver")

PACKET_TYPE = "application/octet-stream"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10000


def error(status, reason, **extra):
    return aioweb.json_response(dict(error=reason, **extra), status=status)


async def ingest(request):
    receiver = request.app["receiver"]
    if request.content_type != PACKET_TYPE:
        receiver.storage.count_rejection(NO_DEVICE, BAD_CONTENT_TYPE)
        log.warning("rejected http body from %s: bad_content_type %r", request.remote, request.content_type)
        return error(http_status(BAD_CONTENT_TYPE), BAD_CONTENT_TYPE, detail="send the packet bytes as %s" % PACKET_TYPE)
    # Read one byte past the limit, never the whole body of a flood: the
    # pipeline then refuses it as oversize (and counts it).
    packet = await request.content.read(MAX_PACKET_SIZE + 1)
    outcome, ack = await receiver.submit(packet)
    if outcome.status == REJECTED:
        return error(http_status(outcome.reason), outcome.reason)
    return aioweb.Response(body=ack, content_type=PACKET_TYPE, headers={"X-Mpseal-Status": outcome.status})


def _device_json(device, latest, rejected):
    info = device.public()
    info["latest"] = latest.get(device.name)
    info["rejected_by_reason"] = rejected.get(device.name, {})
    return info


async def devices(request):
    storage = request.app["receiver"].storage
    latest = storage.latest_readings()
    rejected = storage.rejection_counts()[1]
    return aioweb.json_response({"devices": [_device_json(d, latest, rejected) for d in storage.list_devices()]})


def _number(text, name, kind, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise aioweb.HTTPBadRequest(
            text=json.dumps({"error": "bad_query", "detail": "%s must be a number from %s to %s" % (name, low, high)}),
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
        rows = storage.readings(name, since=since, limit=limit)
    except NoSuchDevice:
        return error(404, "unknown_device", device=name)
    return aioweb.json_response({"device": name, "readings": rows})


async def latest(request):
    return aioweb.json_response({"latest": request.app["receiver"].storage.latest_readings()})


async def stats(request):
    return aioweb.json_response(request.app["receiver"].stats())


async def healthz(request):
    receiver = request.app["receiver"]
    receiver.storage.db.execute("SELECT 1").fetchone()
    return aioweb.json_response({"ok": True, "udp": list(receiver.udp_address or ()), "database": receiver.storage.path})


def add_routes(app):
    app.router.add_post("/api/ingest", ingest)
    app.router.add_get("/api/devices", devices)
    app.router.add_get("/api/devices/{name}/readings", readings)
    app.router.add_get("/api/readings/latest", latest)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/healthz", healthz)
