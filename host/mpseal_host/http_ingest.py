"""`POST /api/ingest` on the ingest listener (docs/api.md): a packet in, its
ack out. The listener serves nothing else but, with `--releases`, the signed
OTA release files boards fetch (ota.py, GET only); it is meant to be
reachable by boards (a sealed packet is safe from anywhere), the API lives
elsewhere.

The body is read whole: to its Content-Length, or chunked to its last
chunk, however the TCP segments fall (one read() returns one segment). It is
capped at one byte past mpseal's packet limit (then refused as oversize, the
rest never read) and must arrive within BODY_TIMEOUT_S. The Content-Type
must be given and be application/octet-stream: a missing one is refused like
a wrong one, so a browser's no-cors cross-site fetch (text/plain at most)
never reaches the pipeline.
"""
import asyncio
import logging

from aiohttp import web as aioweb

from mpseal import errors
from mpseal.packet import MAX_PACKET_SIZE
from mpseal_host.pipeline import REJECTED
from mpseal_host.rejections import BAD_CONTENT_TYPE, BODY_TIMEOUT, STORAGE_ERROR, http_status

log = logging.getLogger("mpseal.requests")

PACKET_TYPE = "application/octet-stream"
BODY_TIMEOUT_S = 10.0
RECEIVER_KEY = aioweb.AppKey("receiver", object)



def error(status, reason, **extra):
    return aioweb.json_response(dict(error=reason, **extra), status=status)


async def _refuse(receiver, request, reason, detail):
    log.warning("rejected http body from %s: %s (%s)", request.remote, reason, detail)
    await receiver.count_rejection(reason)  # answered once counted: stats are exact when the client reads them


async def read_body(request, limit=MAX_PACKET_SIZE + 1):
    """The whole body, or its first `limit` bytes when it is longer."""
    chunks = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def ingest(request):
    receiver = request.app[RECEIVER_KEY]
    content_type = request.headers.get("Content-Type")
    if content_type is None or request.content_type != PACKET_TYPE:
        await _refuse(receiver, request, BAD_CONTENT_TYPE, "Content-Type %r" % content_type)
        return error(http_status(BAD_CONTENT_TYPE), BAD_CONTENT_TYPE, detail="send the packet bytes as %s" % PACKET_TYPE)
    if request.content_length is not None and request.content_length > MAX_PACKET_SIZE:
        await _refuse(receiver, request, errors.OVERSIZE, "Content-Length %d" % request.content_length)
        return error(http_status(errors.OVERSIZE), errors.OVERSIZE)
    try:
        packet = await asyncio.wait_for(read_body(request), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        await _refuse(receiver, request, BODY_TIMEOUT, "no whole body within %.0f s" % BODY_TIMEOUT_S)
        return error(http_status(BODY_TIMEOUT), BODY_TIMEOUT)
    outcome, ack = await receiver.submit(packet, request.remote)
    if outcome is None or outcome.status == REJECTED:
        reason = STORAGE_ERROR if outcome is None else outcome.reason
        response = error(http_status(reason), reason)
    elif ack is None:  # stored (or a duplicate) but not answered: over the re-ack budget, or no host seq left
        response = error(429, "no_ack", detail="try again later")
    else:
        response = aioweb.Response(body=ack, content_type=PACKET_TYPE, headers={"X-Mpseal-Status": outcome.status})
    if len(packet) > MAX_PACKET_SIZE:
        response.force_close()  # the rest of an oversize body was never read
    return response


def add_routes(app):
    app.router.add_post("/api/ingest", ingest)
