"""The I/O around ttn.TtnIngest: The Things Stack's MQTT integration (paho-mqtt)
and its webhook integration (an aiohttp server). One thread owns the database:
MQTT messages are handled in paho's network thread, one at a time.

MQTT: subscribe `v3/{app}@{tenant}/devices/+/up` (QoS 0, as TTN offers it),
publish acks to `.../devices/{device}/down/push`. TTN drops uplinks sent
while we are disconnected; paho reconnects by itself (back-off 1..60 s).
Back-filling the gap from TTN's Storage Integration API is not done yet.

Webhook: `POST /ttn/up` with the uplink JSON; the secret header configured on
the TTN webhook must match (constant-time). TTS adds `X-Downlink-Push` and
`X-Downlink-Apikey` headers when the webhook has a downlink API key: acks are
POSTed there (`Authorization: Bearer <key>`).
"""
import json
import logging
import threading
import time

from mpseal_host import ttn

log = logging.getLogger("mpseal.ttn")
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
SECRET_HEADER = "X-Mpseal-Secret"
WEBHOOK_PATH = "/ttn/up"
DOWNLINK_TIMEOUT_S = 10


def describe(result):
    outcome, uplink, down = result
    where = uplink.device_id if uplink is not None else "?"
    if isinstance(outcome, ttn.TtnError):
        return "ttn %s: refused, %s" % (where, outcome)
    radio = "" if uplink is None or uplink.rssi is None else " rssi %s snr %s" % (uplink.rssi, uplink.snr)
    line = "ttn %s: %s seq %s%s" % (where, outcome.status if outcome.reason is None else "%s (%s)" % (outcome.status, outcome.reason), outcome.seq, radio)
    return line + (", ack queued for RX1" if down else "")


class MqttBridge:
    def __init__(self, core, host, port, application, tenant=ttn.DEFAULT_TENANT, username=None, password=None, tls=False, on_result=None):
        import paho.mqtt.client as mqtt

        self.core = core
        self.application = application
        self.tenant = tenant
        self.on_result = on_result
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        if username:
            self.client.username_pw_set(username, password)  # TTN: "{app}@{tenant}" and an API key
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.host = host
        self.port = port

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            log.error("MQTT broker refused us: %s (check the username and API key)", reason)
            return
        client.subscribe(ttn.up_topic(self.application, self.tenant), qos=0)
        self.connected.set()

    def _on_message(self, client, userdata, message):
        try:
            result = self.core.handle(message.payload, time.time())
        except Exception:  # a bug must not stop the bridge: the next uplink may be fine
            log.exception("ttn: uplink on %s failed", message.topic)
            return
        outcome, uplink, down = result
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
        result = core.handle(body, time.time())
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
