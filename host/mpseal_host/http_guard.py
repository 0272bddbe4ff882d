"""Bounds on the receiver's HTTP connections, in front of aiohttp.

aiohttp has no connection limit and no header timeout: an idle or
half-open connection stays open for minutes, and 1,100 of them exhaust the
usual 1024 file descriptors. Each listener therefore serves aiohttp's
protocol through GuardedProtocol, which:

* keeps the listener under its total limit and each client address under
  its per-client limit, so the FD budget is never reached and one client
  cannot take every slot: a connection over a limit first evicts the oldest
  *idle* connection (no request in progress) of that client, or for the
  total limit of the client holding the most connections; only when none is
  idle is it refused. Idle floods then cost their senders their own slots,
  not a working client's;
* closes a connection that has not started a request HEADER_TIMEOUT_S after
  it opened, or after its previous response (slow or idle clients; aiohttp's
  own keep-alive timeout covers the idle case only once a request finished);
* lets at most MAX_REQUESTS_PER_CONNECTION requests ride one connection.

The app's middleware (guard_middleware) tells the guard when a request
starts and ends. Body reads have their own timeout (http_ingest.py).
"""
import asyncio
import logging
import socket

from aiohttp import web as aioweb

log = logging.getLogger("mpseal.requests")

HEADER_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 5.0
MAX_REQUESTS_PER_CONNECTION = 1000
ACCEPT_PER_WAKEUP = 64  # connections asyncio accepts per wake-up of a listener (start_site)
KERNEL_BACKLOG = 4096  # the kernel's accept queue (capped by net.core.somaxconn)
GUARD_KEY = aioweb.AppKey("connection_limits", object)


class ConnectionLimits:
    def __init__(self, name, total, per_client, counters, header_timeout=HEADER_TIMEOUT_S):
        self.name = name
        self.total = total
        self.per_client = per_client
        self.header_timeout = header_timeout
        self.counters = counters  # the receiver's counters dict: refusals are counted there
        self.open = 0
        self.by_client = {}
        self.guards = {}  # transport -> GuardedProtocol, oldest first

    def _evict_idle(self, client=None):
        if client is None:  # the total limit: take from whoever holds the most
            for client, _ in sorted(self.by_client.items(), key=lambda item: -item[1]):
                if self._evict_idle(client):
                    return True
            return False
        for guard in self.guards.values():
            if guard.idle() and guard.client == client:
                self.counters["connections_evicted_idle"] = self.counters.get("connections_evicted_idle", 0) + 1
                guard.evict()
                return True
        return False

    def admit(self, client):
        if self.by_client.get(client, 0) >= self.per_client and not self._evict_idle(client):
            self._refuse("connections_refused_per_client", client, "%d busy from it, the limit" % self.per_client)
            return False
        if self.open >= self.total and not self._evict_idle():
            self._refuse("connections_refused_total", client, "%d busy, the limit" % self.open)
            return False
        self.open += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return True

    def release(self, client):
        self.open -= 1
        left = self.by_client.get(client, 1) - 1
        if left:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)

    def _refuse(self, counter, client, why):
        self.counters[counter] = self.counters.get(counter, 0) + 1
        log.warning("%s: refused a connection from %s (%s)", self.name, client, why)


class GuardedProtocol(asyncio.Protocol):
    """Wraps one aiohttp RequestHandler (made only for admitted connections)."""

    def __init__(self, limits, make_inner):
        self.limits = limits
        self.make_inner = make_inner
        self.inner = None
        self.transport = None
        self.client = None
        self.timer = None
        self.requests = 0

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else "?"
        if not self.limits.admit(self.client):
            self.client = None
            transport.abort()
            return
        self.transport = transport
        self.limits.guards[transport] = self
        self.inner = self.make_inner()
        self.inner.connection_made(transport)
        self._arm()

    def idle(self):
        """No request in progress: waiting for headers, or between requests."""
        return self.timer is not None

    def evict(self):
        """Closes at once and gives the slot back now (connection_lost comes later)."""
        transport = self.transport
        self._release()
        if transport is not None:
            transport.abort()

    def _release(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.client is not None:
            self.limits.release(self.client)
            self.limits.guards.pop(self.transport, None)
            self.client = None

    def _arm(self):
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.limits.header_timeout, self._timeout)

    def _timeout(self):
        self.timer = None
        self.limits.counters["connections_timed_out"] = self.limits.counters.get("connections_timed_out", 0) + 1
        if self.transport is not None:
            self.transport.abort()

    def request_started(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.requests += 1
        return self.requests < MAX_REQUESTS_PER_CONNECTION

    def request_done(self):
        if self.client is not None and not self.transport.is_closing():
            self._arm()

    def data_received(self, data):
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self):
        if self.inner is not None:
            return self.inner.eof_received()
        return False

    def pause_writing(self):
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc):
        self._release()
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)


@aioweb.middleware
async def guard_middleware(request, handler):
    guard = request.app[GUARD_KEY].guards.get(request.transport)
    keep = guard.request_started() if guard is not None else True
    try:
        response = await handler(request)
    finally:
        if guard is not None:
            guard.request_done()
    if not keep:
        response.force_close()
    return response


async def start_site(runner, host, port, limits, backlog=ACCEPT_PER_WAKEUP, reuse_port=False):
    """Listens on host:port with aiohttp's protocol behind the guard;
    returns the asyncio server (close it before runner.cleanup()).
    reuse_port: SO_REUSEPORT, the port shared with other receivers.

    asyncio uses one number, `backlog`, both for the kernel's accept queue
    (listen()) and for how many connections it accepts per wake-up. We want
    them apart: few per wake-up, so the FDs taken before the guard admits or
    evicts stay far under the FD limit; a deep kernel queue (KERNEL_BACKLOG),
    so a burst of connections waits in the kernel, costing us no FD, instead
    of overflowing it. An overflowed queue is worse than a refusal: with
    SYN cookies the kernel keeps no state for the handshake whose last ACK
    it dropped, the client believes it is connected and we never see it (a
    burst of 1,100 connections lost half of them that way)."""
    loop = asyncio.get_running_loop()
    make_inner = runner.server
    server = await loop.create_server(lambda: GuardedProtocol(limits, make_inner), host, port, backlog=backlog,
                                      reuse_address=True, reuse_port=reuse_port or None)
    for listening in server.sockets:
        deeper = socket.fromfd(listening.fileno(), listening.family, listening.type)  # a dup of the same socket
        try:
            deeper.listen(KERNEL_BACKLOG)  # listen() again on a listening socket only resizes its queue
        finally:
            deeper.close()
    return server


def runner_for(app):
    # keepalive_timeout: an idle keep-alive connection goes after this; the
    # header timeout above bounds everything before a request starts.
    # handler_cancellation: a client that goes away cancels its handler.
    return aioweb.AppRunner(
        app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S, handler_cancellation=True,
        max_line_size=4096, max_field_size=4096, max_headers=64, shutdown_timeout=5.0,
    )
