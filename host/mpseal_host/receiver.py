"""`mpseal receive`: one asyncio process, UDP and HTTP in, sealed acks out.

UDP: the socket is drained in bursts (up to MAX_BATCH datagrams per wake-up),
the burst goes through Ingestor.ingest() as one transaction, and only then are
the acks sent, so an acknowledged reading is always on disk. Under load the
bursts grow, which is what makes the commits cheap; at low rates a burst is a
single packet and the latency is one commit.
HTTP (aiohttp): POST /api/ingest queues the body into the next burst and
answers with the ack once it is committed. The JSON API and the web page are
routes on the same aiohttp application (api.py, web.py).
"""
import asyncio
import logging
import signal
import socket
import time

from aiohttp import web as aioweb

from mpseal_host import api, web
from mpseal_host.ingest import Ingestor
from mpseal_host.integrations.fleet import Fleet

log = logging.getLogger("mpseal.receiver")

# Datagrams per transaction. A commit costs about one page write per device in
# the batch, so bigger batches are cheaper per reading; the cap bounds the time
# the event loop is busy (~60 ms) and so the ack latency under overload.
MAX_BATCH = 2048
UDP_BUFFER = 4096  # bigger than any packet, so an oversize datagram is seen whole and refused
SOCKET_BUFFER = 8 * 1024 * 1024  # rides out bursts while a batch commits


class Receiver:
    def __init__(self, storage, udp=None, http=None, mqtt=None, reuse_port=False):
        self.storage = storage
        # SO_REUSEPORT: several receivers on one machine bind the same ports
        # and the kernel spreads datagrams/connections among them (N
        # receivers sharing one PostgreSQL database, docs/receiver.md).
        self.reuse_port = reuse_port
        self.ingestor = Ingestor(storage)
        self.fleet = Fleet(storage)  # status per device from its own interval (page, /metrics, MQTT)
        self.mqtt_settings = mqtt
        self.mqtt = None  # integrations.mqtt.MqttPublisher with --mqtt
        self.udp_address = udp
        self.http_address = http
        self.udp_socket = None
        self.runner = None
        self.http_pending = []  # (packet, future)
        self.flush_scheduled = False
        self.started_at = time.time()
        self.counters = {"udp_datagrams": 0, "http_requests": 0, "batches": 0, "acks_sent": 0, "acks_dropped": 0}

    async def start(self):
        loop = asyncio.get_running_loop()
        if self.mqtt_settings is not None:
            from mpseal_host.integrations.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(self.storage, self.fleet, self.mqtt_settings)
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
            app = aioweb.Application(client_max_size=64 * 1024)
            app["receiver"] = self
            api.add_routes(app)
            web.add_routes(app)
            self.runner = aioweb.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = aioweb.TCPSite(self.runner, self.http_address[0], self.http_address[1], reuse_port=self.reuse_port or None)
            await site.start()
            self.http_address = self.runner.addresses[0][:2]

    async def stop(self):
        """Stops taking packets, answers what is queued, closes the database."""
        if self.udp_socket is not None:
            asyncio.get_running_loop().remove_reader(self.udp_socket.fileno())
        self._flush()
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.udp_socket is not None:
            self.udp_socket.close()
        self.storage.close()

    # --- UDP ---------------------------------------------------------------

    def _on_udp_readable(self):
        items = []
        addresses = []
        recvfrom = self.udp_socket.recvfrom
        for _ in range(MAX_BATCH):
            try:
                data, address = recvfrom(UDP_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp receive error: %s", exc)
                continue
            items.append((data, "udp", None, address))
            addresses.append(address)
        self.counters["udp_datagrams"] += len(items)
        self._ingest(items, addresses)

    def _send_ack(self, ack, address):
        try:
            self.udp_socket.sendto(ack, address)
            self.counters["acks_sent"] += 1
        except OSError:  # send buffer full or unreachable: the device retransmits, we re-ack
            self.counters["acks_dropped"] += 1

    # --- HTTP --------------------------------------------------------------

    def submit(self, packet, source=None):
        """Queues one HTTP body for the next batch; the future gets (Outcome,
        ack). `source`: the client's address (re-ack limits)."""
        future = asyncio.get_running_loop().create_future()
        self.http_pending.append((packet, future, source))
        self.counters["http_requests"] += 1
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _flush(self):
        self.flush_scheduled = False
        self._ingest([], [])

    # --- both --------------------------------------------------------------

    def _ingest(self, items, addresses):
        pending, self.http_pending = self.http_pending, []
        items.extend((packet, "http", None, source) for packet, _, source in pending)
        if not items:
            return
        now = time.time()
        results = self.ingestor.ingest(items, now=now)
        self.counters["batches"] += 1
        for i, address in enumerate(addresses):
            ack = results[i][1]
            if ack is not None:  # rejected: UDP answers with silence
                self._send_ack(ack, address)
        for (_, future, _), result in zip(pending, results[len(addresses) :]):
            if not future.done():  # the client may have gone away
                future.set_result(result)
        if self.mqtt is not None:  # after the acks: publishing only queues, it never holds them up
            try:
                self.mqtt.notify(results, now)
            except Exception:
                log.exception("mqtt: could not queue the batch's state (the next sync republishes it)")

    def stats(self):
        stats = self.storage.stats()
        stats["receiver"] = dict(self.counters, uptime_s=round(time.time() - self.started_at, 1))
        return stats


async def serve(storage, udp, http, ready=None, mqtt=None, reuse_port=False):
    """Runs until SIGTERM or SIGINT, then flushes and returns. `mqtt`:
    integrations.mqtt.MqttSettings to publish to a broker, or None."""
    receiver = Receiver(storage, udp, http, mqtt, reuse_port)
    await receiver.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready(receiver)
    await stop.wait()
    log.info("stopping: flushing and closing %s", storage.location)
    await receiver.stop()
    return receiver
