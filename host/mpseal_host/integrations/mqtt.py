"""The MQTT publisher of `mpseal receive --mqtt URL`: state, availability and
Home Assistant discovery (messages in ha_discovery.py) on a broker.

Publishing never holds up ingest. The receiver calls `notify()` after each
commit (after the acks): it only notes the newest stored reading per device
and returns. The sending task turns those into messages in a bounded,
ordered queue, newest per topic (a newer state for a device replaces the one
still waiting). A separate task sends the queue with QoS 1, each message taken off
the queue only once the broker acknowledged it. When the broker is away the
task reconnects with exponential backoff (RECONNECT_MIN_S .. RECONNECT_MAX_S)
while readings keep being stored and acked; the database stays the source of
truth: on every (re)connect, and whenever Home Assistant announces itself on
`homeassistant/status`, discovery, availability and the last reading of every
device are published again from the database. A full queue drops its oldest
message (counted) and a resync follows.

The fleet status comes from `views`, a coroutine function (the receiver's
runs fleet.Fleet.devices() in its read pool, so no query of the publisher
runs on the event loop), or from `fleet.devices()` when no `views` is given.

Availability: every TICK_S while connected, the fleet status (fleet.py) is read; a device is
`online` while it reports within its own interval (status ok or late). The
same tick publishes readings that another process (sms-ingest) stored.
"""
import asyncio
import collections
import logging
import os
import ssl
import urllib.parse

import aiomqtt

from mpseal_host.errors import MpsealError
from mpseal_host.integrations import ha_discovery
from mpseal_host.integrations.fleet import LATE, OK, is_synthetic
from mpseal_host.integrations.ha_discovery import OFFLINE, ONLINE, QOS, Topics, announced_fields, encode
from mpseal_host.integrations.timerange import with_measured_at

log = logging.getLogger("mpseal.mqtt")

QUEUE_LIMIT = 10000  # topics waiting; ~3 per device, so only a huge fleet reaches it
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 15.0
TICK_S = 5.0
PUBLISH_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
STOP_DRAIN_S = 2.0
PASSWORD_ENV = "MPSEAL_MQTT_PASSWORD"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttConfigError(MpsealError, ValueError):
    """An --mqtt option that cannot work (the message says which and why)."""


class MqttSettings:
    def __init__(self, host, port=1883, tls=False, username=None, password=None, ca_file=None, cert_file=None,
                 key_file=None, client_id=None, prefix="mpseal", discovery_prefix="homeassistant"):
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_id = client_id or "mpseal-receiver-%d" % os.getpid()
        self.prefix = prefix
        self.discovery_prefix = discovery_prefix

    def __repr__(self):  # never the password
        return "MqttSettings(%s://%s:%d, user=%r)" % ("mqtts" if self.tls else "mqtt", self.host, self.port, self.username)

    @classmethod
    def from_url(cls, url, username=None, password_file=None, environ=os.environ, **options):
        """`mqtt://[user@]host[:port]` or `mqtts://...` (TLS). A password is
        never taken from the URL or the command line: from `password_file`
        (first line) or the MPSEAL_MQTT_PASSWORD environment variable."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
            raise MqttConfigError("--mqtt must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got %r" % url)
        if parsed.password is not None:
            raise MqttConfigError("put the MQTT password in a file (--mqtt-password-file) or %s, not in the URL" % PASSWORD_ENV)
        try:
            port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        except ValueError as exc:
            raise MqttConfigError("--mqtt port: %s" % exc)
        password = None
        if password_file:
            try:
                with open(password_file) as f:
                    password = f.readline().rstrip("\r\n")
            except OSError as exc:
                raise MqttConfigError("cannot read the MQTT password file: %s" % exc)
        elif environ.get(PASSWORD_ENV):
            password = environ[PASSWORD_ENV]
        user = username or (urllib.parse.unquote(parsed.username) if parsed.username else None)
        if password is not None and user is None:
            raise MqttConfigError("an MQTT password needs a username (mqtt://USER@HOST or --mqtt-username)")
        return cls(parsed.hostname, port, tls=parsed.scheme == "mqtts", username=user, password=password, **options)

    def tls_context(self):
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise MqttConfigError("MQTT TLS files: %s" % exc)
        return context


class MqttPublisher:
    def __init__(self, storage, fleet, settings, queue_limit=QUEUE_LIMIT, tick_s=TICK_S, views=None):
        self.storage = storage
        self.fleet = fleet
        self.views = views  # async () -> fleet views; None: fleet.devices() in place
        self.settings = settings
        self.topics = Topics(settings.prefix, settings.discovery_prefix)
        self.tls_context = settings.tls_context()  # raises MqttConfigError before the receiver starts
        self.queue_limit = queue_limit
        self.tick_s = tick_s
        self.pending = collections.OrderedDict()  # topic -> (payload bytes, retain)
        self.dirty = {}  # device id -> newest stored reading not yet queued (name, seq, transport, value, time)
        self.wake = asyncio.Event()
        self.need_resync = True
        self.connected = False
        self.counters = {"published": 0, "dropped": 0, "connects": 0, "coalesced": 0}
        # What the broker was last told, per device id: name, fields, seq, availability
        self.announced = {}
        self.availability = {}
        self.seq = {}
        self.task = None
        self._stopping = False

    # --- called by the receiver (sync, cheap) ------------------------------

    def notify(self, results, now):
        """After a commit: note the newest stored reading per device. O(1)
        per reading; the messages are built by the sending task, once per
        device however many readings arrived meanwhile."""
        dirty = self.dirty
        for outcome, _ in results:
            if outcome.status == "stored":
                known = dirty.get(outcome.device_id)
                if known is None or outcome.seq > known[1]:
                    dirty[outcome.device_id] = (outcome.device, outcome.seq, outcome.transport, outcome.value, now)
        if dirty:
            self.wake.set()

    def _drain_dirty(self):
        """Turns the noted readings into queued state (and discovery) messages."""
        dirty, self.dirty = self.dirty, {}
        for device_id, (name, seq, transport, value, now) in dirty.items():
            if seq <= self.seq.get(device_id, 0):
                continue
            reading = with_measured_at({"seq": seq, "received_at": now, "transport": transport, "format": None, "value": value})
            self._publish_reading(device_id, name, reading, synthetic=None)
            if self.availability.get(device_id) != ONLINE:
                self._put(self.topics.availability(name), ONLINE)
                self.availability[device_id] = ONLINE

    def stats(self):
        return dict(self.counters, connected=self.connected, queued=len(self.pending))

    # --- the queue -----------------------------------------------------------

    def _put(self, topic, payload, retain=True):
        data = payload if isinstance(payload, bytes) else (encode(payload) if isinstance(payload, dict) else payload.encode())
        if topic in self.pending:
            self.counters["coalesced"] += 1
            del self.pending[topic]
        elif len(self.pending) >= self.queue_limit:
            self.pending.popitem(last=False)
            self.counters["dropped"] += 1
            self.need_resync = True  # what was dropped is still in the database
        self.pending[topic] = (data, retain)
        self.wake.set()

    def _publish_reading(self, device_id, name, reading, synthetic):
        fields = announced_fields(reading["value"])
        known = self.announced.get(device_id)
        if known is None or known[0] != name or not set(fields) <= set(known[1]):
            fields = sorted(set(fields) | set(known[1] if known and known[0] == name else ()))
            if synthetic is None:
                synthetic = is_synthetic(reading)
            self._put(self.topics.discovery(device_id),
                      ha_discovery.discovery_payload(device_id, name, fields, self.topics, bool(synthetic)))
            self.announced[device_id] = (name, fields)
        self._put(self.topics.state(name), ha_discovery.state_payload(reading))
        self.seq[device_id] = reading["seq"]

    async def fleet_views(self):
        if self.views is not None:
            return await self.views()
        return self.fleet.devices()

    def sync(self, full=False, views=None):
        """Brings the broker up to the database (`views`: the fleet's status,
        fetched before; None: fleet.devices() now): with `full`, everything
        again (after a connect, HA's birth message, a dropped message);
        otherwise only availability changes, readings stored by other
        processes, removed devices."""
        if full:
            # self.dirty stays: what was noted while the views were fetched
            # may be newer than they are (older seqs are skipped when drained).
            self.announced.clear()
            self.availability.clear()
            self.seq.clear()
            self._put(self.topics.bridge_availability, ONLINE)
        if views is None:
            views = self.fleet.devices()
        live = set()
        for view in views:
            device_id, name = view["id"], view["name"]
            live.add(device_id)
            latest = view["latest"]
            if full and device_id not in self.announced:
                fields = announced_fields(latest["value"]) if latest else []
                self._put(self.topics.discovery(device_id),
                          ha_discovery.discovery_payload(device_id, name, fields, self.topics, view["synthetic"]))
                self.announced[device_id] = (name, fields)
            if latest is not None and latest["seq"] > self.seq.get(device_id, 0):
                self._publish_reading(device_id, name, latest, view["synthetic"])
            available = ONLINE if view["status"] in (OK, LATE) else OFFLINE
            if self.availability.get(device_id) != available:
                self._put(self.topics.availability(name), available)
                self.availability[device_id] = available
        for device_id in [d for d in self.announced if d not in live]:  # removed: HA deletes the device
            name = self.announced.pop(device_id)[0]
            self._put(self.topics.discovery(device_id), b"")
            self._put(self.topics.state(name), b"")
            self._put(self.topics.availability(name), b"")
            self.availability.pop(device_id, None)
            self.seq.pop(device_id, None)

    # --- the connection ----------------------------------------------------

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self.run())
        return self.task

    async def stop(self, drain_s=STOP_DRAIN_S):
        """Says `offline` for the receiver (a clean disconnect does not fire
        the will), gives the queue up to `drain_s` to reach the broker, stops."""
        self._stopping = True
        if self.connected:
            self._put(self.topics.bridge_availability, OFFLINE)
            deadline = asyncio.get_running_loop().time() + drain_s
            while self.pending and self.connected and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    def _client(self):
        s = self.settings
        will = aiomqtt.Will(self.topics.bridge_availability, OFFLINE, qos=QOS, retain=True)
        return aiomqtt.Client(s.host, s.port, username=s.username, password=s.password, identifier=s.client_id,
                              will=will, tls_context=self.tls_context, keepalive=KEEPALIVE_S, timeout=PUBLISH_TIMEOUT_S)

    async def run(self):
        backoff = RECONNECT_MIN_S
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            while not self._stopping:
                try:
                    async with self._client() as client:
                        self.connected = True
                        self.counters["connects"] += 1
                        log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
                        backoff = RECONNECT_MIN_S
                        await client.subscribe(self.topics.ha_status, qos=QOS)
                        self.need_resync = True
                        self.wake.set()
                        await _first(self._send(client), self._listen(client))
                except aiomqtt.MqttError as exc:
                    if self.connected:
                        log.warning("mqtt: lost the broker (%s); readings are still stored, retrying", exc)
                    elif self.counters["connects"] == 0 and backoff == RECONNECT_MIN_S:
                        log.warning("mqtt: cannot reach %s:%d (%s); retrying with backoff", self.settings.host, self.settings.port, exc)
                except Exception:  # a bug here must not end publishing; at most one line per backoff
                    log.exception("mqtt: publisher failed; reconnecting")
                finally:
                    self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
        finally:
            ticker.cancel()

    async def _send(self, client):
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.need_resync:
                self.need_resync = False
                self.sync(full=True, views=await self.fleet_views())
            self._drain_dirty()
            while self.pending:
                topic, (data, retain) = next(iter(self.pending.items()))
                await client.publish(topic, data, qos=QOS, retain=retain, timeout=PUBLISH_TIMEOUT_S)
                # Taken off only once the broker has it; a newer message for
                # this topic queued meanwhile stays.
                if self.pending.get(topic) == (data, retain):
                    del self.pending[topic]
                self.counters["published"] += 1

    async def _listen(self, client):
        async for message in client.messages:
            if str(message.topic) == self.topics.ha_status and bytes(message.payload or b"").strip() == b"online":
                log.info("mqtt: Home Assistant came online; publishing discovery again")
                self.need_resync = True
                self.wake.set()

    async def _tick(self):
        while True:
            await asyncio.sleep(self.tick_s)
            if not self.connected:  # the full sync after the next connect covers the gap
                continue
            try:
                self.sync(views=await self.fleet_views())
            except Exception:  # a storage hiccup must not end the publisher; the next tick retries
                log.exception("mqtt: could not read the fleet status")


async def _first(*coroutines):
    """Runs the coroutines until one ends or fails; cancels the others; re-raises."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    for task in done:
        task.result()
