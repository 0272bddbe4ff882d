"""`mpseal receive`: one asyncio process; packets in, sealed acks out, and an
API on a listener of its own (docs/receiver.md, "Deployment").

Threads and their jobs:
* the event loop receives (UDP datagrams, HTTP bodies), sends acks, serves
  the API and the page; it never touches the database;
* the writer (writer.py) owns the write connection: pipeline, one
  transaction per batch, acks sealed; results come back to the loop;
* the read pool (readers.py) answers API queries (the integrations' too:
  /metrics, export, the MQTT publisher's fleet status) on read-only
  connections.

Listeners: ingest (UDP + `POST /api/ingest` on the HTTP ingest listener),
meant to be reachable by boards; the API + page on their own listener,
loopback by default, behind tokens when exposed (access.py). Every HTTP
connection goes through http_guard.py (limits, header timeout), every
per-request log line through one rate limit (log_limit.py).

An acknowledged reading is always on disk: acks are sent only after their
batch committed. While another process holds the database's write lock, the
writer waits; the loop keeps receiving (queued, bounded) and answers a
retransmission of an already committed reading from the acks it keeps
(RECENT_ACKS), byte for byte the ack that reading got.
"""
import asyncio
import collections
import concurrent.futures
import errno
import functools
import gc
import logging
import resource
import signal
import socket
import sys
import time

from aiohttp import web as aioweb

from mpseal_host import access, api, http_guard, http_ingest, log_limit, ota, web
from mpseal_host.addresses import local_addresses
from mpseal_host.pipeline import DUPLICATE, REJECTED, STORED, Outcome
from mpseal_host.rejections import STORAGE_BUSY
from mpseal_host.readers import ReadPool
from mpseal_host.storage import open_storage
from mpseal_host.writer import StorageWriter

log = logging.getLogger("mpseal.receiver")
request_log = logging.getLogger("mpseal.requests")

# Datagrams taken per wake-up of the loop; the writer batches across wake-ups.
MAX_DRAIN = 2048
UDP_BUFFER = 4096  # bigger than any packet, so an oversize datagram is seen whole and refused
SOCKET_BUFFER = 8 * 1024 * 1024  # rides out bursts while a batch commits
RECENT_ACKS = 16384  # acks of committed readings kept (at least; with their address) for re-acking while the database is locked
# Connection limits per listener (http_guard.py): far below the FD limit, so
# FD exhaustion is never reached through HTTP.
INGEST_CONNECTIONS, INGEST_PER_CLIENT = 512, 64
API_CONNECTIONS, API_PER_CLIENT = 128, 32
WANTED_FDS = 8192  # soft RLIMIT_NOFILE raised towards this (never above the hard limit)
# The loop must get the GIL back quickly from the writer and the read pool to
# answer a board in milliseconds (CPython's default is 5 ms per switch).
SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLDS = (50_000, 20, 20)  # gc.set_threshold (serve())


def raise_fd_limit(wanted=WANTED_FDS):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def board_addresses(host, port):
    """The address(es) a board should be given for a listener bound to host."""
    if host in ("0.0.0.0", ""):
        return ["%s:%d" % (a, port) for _, a in local_addresses() if not a.startswith("127.")] or ["127.0.0.1:%d" % port]
    return ["%s:%d" % (host, port)]


class Receiver:
    def __init__(self, storage, udp=None, http=None, api=None, require_token=False, api_hosts=(), mqtt=None,
                 reuse_port=False, releases=None):
        self.write_storage = storage  # the writer thread's alone
        # A read-only connection for /api/changes alone, used from one thread
        # of its own (SQLite's data_version is per connection: one must answer
        # every poll). Every other query runs in the read pool.
        self.storage = None
        self.changes_thread = None
        # SO_REUSEPORT: several receivers on one machine bind the same ports
        # and the kernel spreads datagrams/connections among them (N
        # receivers sharing one PostgreSQL database, docs/receiver.md).
        self.reuse_port = reuse_port
        self.releases = releases  # folder served at /ota/ on the ingest listener (ota.py), or None
        self.mqtt_settings = mqtt
        self.mqtt = None  # integrations.mqtt.MqttPublisher with --mqtt
        self.udp_address = udp
        self.http_address = http
        self.api_address = api
        self.require_token = require_token or (api is not None and not access.is_loopback(api[0]))
        self.api_hosts = list(api_hosts)
        self.udp_socket = None
        self.runners = []
        self.servers = []
        self.writer = None
        self.reads = None
        self.log_limit = None
        self.ticker = None
        self.stopping = False
        # Acks of committed readings, for re-acking while the database is
        # locked: one dict (packet bytes -> (ack, address)) per batch, newest
        # last, the oldest dropped while the rest hold RECENT_ACKS.
        self.recent_acks = collections.deque()
        self.recent_count = 0
        self.udp_paused = False
        self.started_at = time.time()
        self.counters = {
            "udp_datagrams": 0, "http_requests": 0, "acks_sent": 0, "acks_dropped": 0,
            "udp_dropped_queue_full": 0, "reacks_while_locked": 0, "accept_errors": 0,
        }

    async def start(self):
        loop = asyncio.get_running_loop()
        self.fd_limit = raise_fd_limit()
        self.log_limit = log_limit.install()
        loop.set_exception_handler(self._loop_exception)
        self.writer = StorageWriter(self.write_storage, loop, self._deliver, on_lock_wait=self.resume_udp)
        self.writer.start()
        self.reads = ReadPool(self.write_storage.connect_location)
        self.changes_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mpseal-changes")
        self.storage = await loop.run_in_executor(
            self.changes_thread, functools.partial(open_storage, self.write_storage.connect_location, read_only=True))
        if self.mqtt_settings is not None:
            from mpseal_host.integrations import routes
            from mpseal_host.integrations.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(None, None, self.mqtt_settings, views=lambda: self.reads.run(routes.fleet_views))
            self.mqtt.start()
        if self.udp_address:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(self.udp_address)
            sock.setblocking(False)
            self.udp_socket = sock
            self.udp_address = sock.getsockname()[:2]
            loop.add_reader(sock.fileno(), self._on_udp_readable)
        if self.http_address:
            app = aioweb.Application(middlewares=[http_guard.guard_middleware], client_max_size=4096)
            limits = http_guard.ConnectionLimits("ingest", *self._limits(INGEST_CONNECTIONS, INGEST_PER_CLIENT, 4), self.counters)
            # Releases on the listener boards reach (ota.py): GET only, signed files.
            self.http_address = await self._serve(app, self.http_address, limits, http_ingest.add_routes,
                                                  lambda app: ota.add_routes(app, self.releases))
        if self.api_address:
            app = aioweb.Application(
                middlewares=[http_guard.guard_middleware, access.access_middleware], client_max_size=64 * 1024)
            limits = http_guard.ConnectionLimits("api", *self._limits(API_CONNECTIONS, API_PER_CLIENT, 8), self.counters)
            policy = access.AccessPolicy(self.reads, self.require_token, (), self.counters)
            app[access.ACCESS_KEY] = policy
            self.api_address = await self._serve(app, self.api_address, limits, access.add_routes, api.add_routes, web.add_routes)
            policy.set_hosts(access.host_names(self.api_address[0], self.api_address[1],
                                               [a for _, a in local_addresses()], self.api_hosts))
        self.ticker = loop.call_later(1.0, self._tick)

    def _limits(self, total, per_client, share):
        """Connection limits within this process's FD budget: `share` is the
        part (1/share) of the FDs left after a reserve for the database,
        sockets and the read pool. Shares add up to well under 1: asyncio
        accepts up to a backlog (64) of connections per listener, several
        loop turns in a row, before any is admitted or evicted, and a closed
        one frees its FD a loop turn later, so that many more may be open for
        a moment."""
        budget = max(8, (self.fd_limit - 64) // share)
        return min(total, budget), min(per_client, budget)

    async def _serve(self, app, address, limits, *add_routes):
        app[http_ingest.RECEIVER_KEY] = self
        app["receiver"] = self  # the integrations' routes look it up by name
        app[http_guard.GUARD_KEY] = limits
        for add in add_routes:
            add(app)
        runner = http_guard.runner_for(app)
        await runner.setup()
        self.runners.append(runner)
        server = await http_guard.start_site(runner, address[0], address[1], limits, reuse_port=self.reuse_port)
        self.servers.append(server)
        return server.sockets[0].getsockname()[:2]

    def _tick(self):
        self.log_limit.flush()
        self.ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _loop_exception(self, loop, context):
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            # accept() at FD exhaustion: asyncio pauses that listener for 1 s
            # and tries again. Counted, one (rate-limited) line, no traceback.
            self.counters["accept_errors"] += 1
            request_log.warning("cannot accept a connection: %s (counted as accept_errors)", exc.strerror)
            return
        loop.default_exception_handler(context)

    async def stop(self):
        """Stops taking packets, stores and answers what is queued, closes the database."""
        loop = asyncio.get_running_loop()
        self.stopping = True
        if self.ticker is not None:
            self.ticker.cancel()
        if self.udp_socket is not None and not self.udp_paused:
            loop.remove_reader(self.udp_socket.fileno())
        for server in self.servers:
            server.close()
        await loop.run_in_executor(None, self.writer.stop)
        await asyncio.sleep(0)  # the writer's last results are delivered
        if self.mqtt is not None:
            await self.mqtt.stop()
        for runner in self.runners:
            await runner.cleanup()
        if self.udp_socket is not None:
            self.udp_socket.close()
        self.reads.close()
        await loop.run_in_executor(self.changes_thread, self.storage.close)
        self.changes_thread.shutdown()
        self.write_storage.close()
        log_limit.uninstall(self.log_limit)

    # --- UDP ---------------------------------------------------------------

    def _on_udp_readable(self, paused=False):
        """Drains the socket into the writer's queue. `paused`: called from
        _deliver while the reader is off (saves a loop turn per batch)."""
        items = []  # (packet, "udp", None, address): the pipeline's item and this side's ticket at once
        append = items.append
        recvfrom = self.udp_socket.recvfrom
        locked = self.writer.waiting_for_lock
        for _ in range(MAX_DRAIN):
            try:
                data, address = recvfrom(UDP_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp receive error: %s", exc)
                continue
            if locked:
                known = self._recent_ack(data)
                if known is not None and known[1] == address:  # a retransmission of a committed reading
                    self.counters["reacks_while_locked"] += 1
                    self._send_ack(known[0], address)
                    continue
            append((data, "udp", None, address))
        if not items:
            if paused:
                self.resume_udp()
            return
        self.counters["udp_datagrams"] += len(items)
        taken = self.writer.submit(items, items)
        if taken < len(items):
            self.counters["udp_dropped_queue_full"] += len(items) - taken  # silence: the board retransmits
        if locked:
            if paused:
                self.resume_udp()
        elif not paused:
            # While the writer stores this batch, let datagrams gather in the
            # socket buffer (8 MiB) instead of waking per datagram and taking
            # the GIL from the writer: one drain per batch, big batches. The
            # writer's results (or a lock wait) turn reading back on.
            asyncio.get_running_loop().remove_reader(self.udp_socket.fileno())
            self.udp_paused = True

    def _recent_ack(self, packet):
        """(ack, address) a committed reading got, or None."""
        for acks in reversed(self.recent_acks):
            known = acks.get(packet)
            if known is not None:
                return known
        return None

    def resume_udp(self):
        if self.udp_paused and not self.stopping and self.udp_socket is not None:
            self.udp_paused = False
            asyncio.get_running_loop().add_reader(self.udp_socket.fileno(), self._on_udp_readable)

    def _send_ack(self, ack, address):
        try:
            self.udp_socket.sendto(ack, address)
            self.counters["acks_sent"] += 1
        except OSError:  # send buffer full or unreachable: the device retransmits, we re-ack
            self.counters["acks_dropped"] += 1

    # --- HTTP --------------------------------------------------------------

    def submit(self, packet, source=None):
        """Queues one HTTP body; the future gets (Outcome, ack). `source`:
        the client's address (re-ack limits)."""
        future = asyncio.get_running_loop().create_future()
        self.counters["http_requests"] += 1
        if self.writer.waiting_for_lock:
            known = self._recent_ack(packet)
            if known is not None and known[1] == source:
                self.counters["reacks_while_locked"] += 1
                future.set_result((Outcome(DUPLICATE, "http"), known[0]))
                return future
        if self.stopping or not self.writer.submit([(packet, "http", None, source)], [(packet, future, source)]):
            future.set_result((Outcome(REJECTED, "http", STORAGE_BUSY), None))
        return future

    def count_rejection(self, reason):
        """Counts a refusal in the next batch; the future is done once that
        batch committed (so an answer is sent after its count is stored)."""
        future = asyncio.get_running_loop().create_future()
        if self.stopping:
            future.set_result(False)
        else:
            self.writer.count_rejection(reason, future)
        return future

    # --- results from the writer (loop thread) -----------------------------

    def _deliver(self, tickets, results, counted=()):
        """A batch's results: acks out, HTTP answers to their futures.
        Tickets: a UDP datagram's item (packet, "udp", None, address), an
        HTTP body's (packet, future, source)."""
        for future in counted:
            if not future.done():
                future.set_result(True)
        kept = {}  # packet -> (ack, address) of this batch's committed readings
        sendto = self.udp_socket.sendto if self.udp_socket is not None else None
        sent = dropped = 0
        for ticket, result in zip(tickets, results):
            outcome, ack = result
            if ticket[1] == "udp":
                if ack is None:  # rejected: UDP answers with silence
                    continue
                address = ticket[3]
                try:
                    sendto(ack, address)
                    sent += 1
                except OSError:  # send buffer full or unreachable: the device retransmits, we re-ack
                    dropped += 1
                status = outcome.status
                if status == STORED or status == DUPLICATE:
                    # kept with the address it went to: while storage waits
                    # for a lock, only that address gets it again (the board
                    # retrying; never a spoofed source to bounce acks at)
                    kept[ticket[0]] = (ack, address)
            else:
                future = ticket[1]
                if ack is not None and outcome is not None and outcome.status in (STORED, DUPLICATE):
                    kept[ticket[0]] = (ack, ticket[2])
                if not future.done():  # the client may have gone away
                    future.set_result(result)
        self.counters["acks_sent"] += sent
        self.counters["acks_dropped"] += dropped
        if kept:
            recent = self.recent_acks
            recent.append(kept)
            self.recent_count += len(kept)
            while self.recent_count - len(recent[0]) >= RECENT_ACKS:
                self.recent_count -= len(recent.popleft())
        if self.mqtt is not None and results:  # after the acks: publishing only queues, it never holds them up
            try:
                self.mqtt.notify(results, time.time())
            except Exception:
                log.exception("mqtt: could not queue the batch's state (the next sync republishes it)")
        if self.udp_paused and not self.stopping:
            self._on_udp_readable(paused=True)  # the next batch, now that this one is answered

    def process_stats(self):
        stats = dict(self.counters)
        stats.update(self.writer.counters)
        stats["queued"] = self.writer.queued()
        stats["storage_waiting_for_lock"] = self.writer.waiting_for_lock
        stats["uptime_s"] = round(time.time() - self.started_at, 1)
        return stats


async def serve(storage, udp, http, api=None, ready=None, require_token=False, api_hosts=(), mqtt=None,
                reuse_port=False, releases=None):
    """Runs until SIGTERM or SIGINT, then flushes and returns. `mqtt`:
    integrations.mqtt.MqttSettings to publish to a broker, or None;
    `releases`: a folder of signed OTA releases to serve at /ota/ (ota.py)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # A batch keeps thousands of small objects alive until it is answered,
    # and with CPython's default (a collection every 700 allocations) the
    # cyclic GC kept scanning them: ~4% of a stored reading's cost. Nothing
    # per packet makes cycles (reference counting frees it all), so collect
    # far less often, and never again scan what was loaded at start.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    receiver = Receiver(storage, udp, http, api, require_token=require_token, api_hosts=api_hosts, mqtt=mqtt,
                        reuse_port=reuse_port, releases=releases)
    await receiver.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready(receiver)
    await stop.wait()
    # A second SIGTERM (a supervisor repeating itself) must not cut the
    # flush short, now or while the interpreter exits; SIGINT still does.
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info("stopping: flushing and closing %s", storage.location)
    await receiver.stop()
    return receiver
