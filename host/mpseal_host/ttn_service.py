"""The I/O around ttn.TtnIngest: The Things Stack's MQTT integration (paho-mqtt)
and its webhook integration (an aiohttp server). One thread owns the database:
MQTT messages are handled in paho's network thread, one at a time.

MQTT: subscribe `v3/{app}@{tenant}/devices/+/up` (QoS 0, as TTN offers it),
publish cumulative acks to `.../devices/{device}/down/push` (TTN queues them
for the RX1 window after the device's next uplink). TTN drops uplinks sent
while we are disconnected; paho reconnects by itself (back-off 1..60 s), and
after every (re)connect the gap is back-filled from TTN's Storage Integration
(`GET /api/v3/as/applications/{app}/packages/storage/uplink_message?after=`,
one `{"result": uplink}` JSON object per line) when it is enabled: what was
already stored comes back as a duplicate and is stored once.

Webhook: `POST /ttn/up` with the uplink JSON; the secret header configured on
the TTN webhook must match (constant-time). TTS adds `X-Downlink-Push` and
`X-Downlink-Apikey` headers when the webhook has a downlink API key: acks are
POSTed there (`Authorization: Bearer <key>`).

push_once: one downlink published by a short-lived MQTT client
(`mpseal ttn ack-now`).
"""
import json
import logging
import threading
import time
import urllib.parse
import urllib.request

from mpseal_host import ttn
from mpseal_host.storage import StorageError

log = logging.getLogger("mpseal.ttn")
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
SECRET_HEADER = "X-Mpseal-Secret"
WEBHOOK_PATH = "/ttn/up"
DOWNLINK_TIMEOUT_S = 10
BACKFILL_TIMEOUT_S = 30
BACKFILL_LIMIT = 1000  # uplinks fetched per reconnect; TTN keeps them for days, we want the gap


def _instant(text):
    """An RFC 3339 time as TTN writes it ("2026-12-01T08:00:00.123456789Z") as
    a datetime, or None. (As strings they do not sort: fractions vary in length.)"""
    from datetime import datetime

    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    main, _, fraction = text[:-1].partition(".")
    try:
        return datetime.fromisoformat(main + "." + (fraction + "000000")[:6] + "+00:00")
    except ValueError:
        return None


class BackfillError(OSError):
    pass


def storage_uplinks(api_url, application, api_key, after, limit=BACKFILL_LIMIT, timeout=BACKFILL_TIMEOUT_S):
    """Uplink documents TTN's Storage Integration holds for `application`,
    received after the RFC 3339 time `after`, oldest first."""
    query = urllib.parse.urlencode({"after": after, "order": "received_at", "limit": limit})
    url = "%s/api/v3/as/applications/%s/packages/storage/uplink_message?%s" % (api_url.rstrip("/"), urllib.parse.quote(application), query)
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + api_key, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        raise BackfillError("storage integration at %s: %s" % (api_url, exc))
    docs = []
    for line in body.splitlines():
        if line.strip():
            try:
                docs.append(json.loads(line)["result"])
            except (ValueError, KeyError, TypeError):
                raise BackfillError("storage integration at %s: a line is not {\"result\": ...}" % api_url)
    return docs


def describe(result):
    outcome, uplink, down = result
    where = uplink.device_id if uplink is not None else "?"
    if isinstance(outcome, ttn.TtnError):
        return "ttn %s: refused, %s" % (where, outcome)
    radio = "" if uplink is None or uplink.rssi is None else " rssi %s snr %s" % (uplink.rssi, uplink.snr)
    line = "ttn %s: %s seq %s%s" % (where, outcome.status if outcome.reason is None else "%s (%s)" % (outcome.status, outcome.reason), outcome.seq, radio)
    return line + (", cumulative ack queued for RX1" if down else "")


class ResultPrinter:
    """One console line per uplink (describe()), until a flood: then one
    summary line per second. Refusals are counted in TtnIngest.counts anyway."""

    def __init__(self, limit=20, clock=time.monotonic, out=print):
        self.limit = limit
        self.clock = clock
        self.out = out
        self.window_start = clock()
        self.lines = self.suppressed = 0

    def __call__(self, result):
        now = self.clock()
        if now - self.window_start >= 1.0:
            if self.suppressed:
                self.out("ttn: %d more uplinks not shown in the last second" % self.suppressed, flush=True)
            self.window_start, self.lines, self.suppressed = now, 0, 0
        if self.lines >= self.limit:
            self.suppressed += 1
            return
        self.lines += 1
        self.out(describe(result), flush=True)


class MqttBridge:
    def __init__(self, core, host, port, application, tenant=ttn.DEFAULT_TENANT, username=None, password=None, tls=False, on_result=None, backfill=None, reconnect_max=RECONNECT_MAX_S):
        """`backfill`: (Storage Integration API URL, API key), or None.
        `reconnect_max`: the longest wait between reconnect attempts (s)."""
        import paho.mqtt.client as mqtt

        self.core = core
        self.backfill = backfill
        self.last_received_at = None  # of the newest uplink handled: where a back-fill starts
        self.backfilled = 0
        self.application = application
        self.tenant = tenant
        self.on_result = on_result
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        if username:
            self.client.username_pw_set(username, password)  # TTN: "{app}@{tenant}" and an API key
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(RECONNECT_MIN_S, reconnect_max)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.subscribing = None  # the message id of our SUBSCRIBE, until the broker's SUBACK
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.host = host
        self.port = port

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            log.error("MQTT broker refused us: %s (check the username and API key)", reason)
            return
        self.subscribing = client.subscribe(ttn.up_topic(self.application, self.tenant), qos=0)[1]

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        # Here, not on connect: the broker has the subscription once it says
        # so (SUBACK), and an uplink published before that is delivered to
        # nobody (QoS 0). So the back-fill starts here, and nothing falls
        # between the fetch and live traffic.
        if mid != self.subscribing:
            return
        if any(reason.is_failure for reason in reasons):
            log.error("MQTT broker refused the subscription: %s (check the application id and the API key's rights)",
                      ", ".join(str(reason) for reason in reasons))
            return
        if self.backfill and self.last_received_at:
            try:
                docs = storage_uplinks(self.backfill[0], self.application, self.backfill[1], self.last_received_at)
            except BackfillError as exc:
                log.warning("ttn: no back-fill after reconnecting: %s", exc)
                docs = []
            for doc in docs:
                self._handle(client, doc, "storage integration")
                self.backfilled += 1
        self.connected.set()

    def _on_message(self, client, userdata, message):
        self._handle(client, message.payload, message.topic)

    def _handle(self, client, raw, source):
        try:
            result = self.core.handle(raw, time.time())
        except StorageError as exc:  # the database went away: TTN's Storage Integration has the uplink
            log.error("ttn: uplink from %s not handled: %s", source, exc)
            return
        except Exception:  # a bug must not stop the bridge: the next uplink may be fine
            log.exception("ttn: uplink from %s failed", source)
            return
        outcome, uplink, down = result
        at = _instant(uplink.received_at) if uplink is not None else None
        if at is not None and (self.last_received_at is None or at > _instant(self.last_received_at)):
            self.last_received_at = uplink.received_at
        if down is not None:
            doc = ttn.down_push(down)
            client.publish(ttn.down_push_topic(self.application, self.tenant, uplink.device_id), json.dumps(doc), qos=0)
        if self.on_result:
            self.on_result(result)

    def start(self):
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def push_once(host, port, application, tenant, ttn_device, packet, username=None, password=None, tls=False, timeout=30):
    """Publishes one sealed packet to the device's down/push topic and
    waits until the broker has it (QoS 1 to the broker; TTN queues it for
    RX1). Raises OSError when the broker cannot be reached in `timeout` s."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    connected = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    try:
        client.connect(host, port)
    except (OSError, ValueError) as exc:
        raise OSError("MQTT broker %s:%d: %s" % (host, port, exc))
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise OSError("MQTT broker %s:%d did not accept us within %d s (check the username and API key)" % (host, port, timeout))
        info = client.publish(ttn.down_push_topic(application, tenant, ttn_device), json.dumps(ttn.down_push(packet)), qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise OSError("MQTT broker %s:%d did not take the downlink within %d s" % (host, port, timeout))
    finally:
        client.disconnect()
        client.loop_stop()


def webhook_app(core, secret, on_result=None):
    """aiohttp application for TTN's webhook integration."""
    from aiohttp import ClientSession, ClientTimeout, web

    async def push(url, key, packet):
        async with ClientSession(timeout=ClientTimeout(total=DOWNLINK_TIMEOUT_S)) as session:
            async with session.post(url, json=ttn.down_push(packet), headers={"Authorization": "Bearer " + key}) as reply:
                if reply.status >= 300:
                    log.warning("ttn: downlink push to %s refused: HTTP %d", url, reply.status)

    async def up(request):
        if not ttn.secret_ok(request.headers.get(SECRET_HEADER), secret):
            core.counts["ttn_bad_secret"] = core.counts.get("ttn_bad_secret", 0) + 1
            return web.json_response({"error": "bad or missing %s header" % SECRET_HEADER}, status=403)
        body = await request.content.read(ttn.MAX_UPLINK_JSON + 1)
        try:
            result = core.handle(body, time.time())
        except StorageError as exc:  # not stored: TTN retries a webhook that failed
            log.error("ttn: webhook uplink not handled: %s", exc)
            return web.json_response({"error": "storage_error"}, status=503)
        outcome, uplink, down = result
        if on_result:
            on_result(result)
        if isinstance(outcome, ttn.TtnError):
            return web.json_response({"error": str(outcome)}, status=400)
        url, key = request.headers.get("X-Downlink-Push"), request.headers.get("X-Downlink-Apikey")
        if down is not None and url and key:
            try:
                await push(url, key, down)
            except Exception as exc:  # stored all the same: the next ack carries the news
                log.warning("ttn: downlink push failed: %s", exc)
        return web.json_response(outcome.as_dict(), status=200 if outcome.status != "rejected" else 422)

    app = web.Application(client_max_size=ttn.MAX_UPLINK_JSON + 1)
    app.router.add_post(WEBHOOK_PATH, up)
    return app
