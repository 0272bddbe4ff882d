"""`mpseal ttn`'s core (mpseal_host.ttn) and its webhook server
(mpseal_host.ttn_service) on a real SQLite file and a real aiohttp server on
loopback. TTN itself cannot be reached here: the uplink documents are built
in the TTS v3 shape its integrations send (the MQTT side runs against a real
mosquitto in tests/test_lorawan_e2e.py)."""
import asyncio
import base64
import json
import os

import pytest

import mpseal
from mpseal import control
from mpseal.values import encode_values
from mpseal_host import ttn
from mpseal_host.ingest import Ingestor
from mpseal_host.pipeline import DUPLICATE, REJECTED, STORED
from mpseal_host.storage import Storage

KEY = bytes(range(32))
DEVICE_ID = 12


@pytest.fixture
def storage(tmp_path):
    s = Storage(str(tmp_path / "db.sqlite"))
    s.add_device("lora", key=KEY, device_id=DEVICE_ID)
    yield s
    s.close()


def reading(seq, version=mpseal.VERSION_COMPACT):
    return mpseal.seal(KEY, DEVICE_ID, seq, encode_values({"temperature": 20.5}), version=version)


def uplink_doc(packet, device="mpseal-12", f_cnt=70000, rssi=-101, snr=-3.5):
    return {
        "end_device_ids": {"device_id": device, "application_ids": {"application_id": "app"}, "dev_addr": "260B000C"},
        "received_at": "2026-12-01T08:00:00.5Z",
        "uplink_message": {
            "f_port": 1,
            "f_cnt": f_cnt,
            "frm_payload": base64.b64encode(packet).decode(),
            "rx_metadata": [{"gateway_ids": {"gateway_id": "a"}, "rssi": rssi - 10, "snr": -9}, {"gateway_ids": {"gateway_id": "b"}, "rssi": rssi, "snr": snr}],
        },
    }


def test_parse_uplink_takes_the_best_gateway():
    up = ttn.parse_uplink(json.dumps(uplink_doc(b"abc")).encode())
    assert (up.device_id, up.packet, up.f_cnt, up.f_port, up.rssi, up.snr, up.dev_addr) == ("mpseal-12", b"abc", 70000, 1, -101, -3.5, "260B000C")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", ttn.BAD_JSON),
        (b"\xff\xfe", ttn.BAD_JSON),
        (b"x" * (ttn.MAX_UPLINK_JSON + 1), ttn.BAD_JSON),
        (json.dumps({"end_device_ids": {"device_id": "d"}, "join_accept": {}}), ttn.NOT_AN_UPLINK),
        (json.dumps({"end_device_ids": {"device_id": 5}, "uplink_message": {}}), ttn.NOT_AN_UPLINK),
        (json.dumps({"end_device_ids": {"device_id": "d"}, "uplink_message": {"f_port": 0}}), ttn.NOT_AN_UPLINK),
        (json.dumps({"end_device_ids": {"device_id": "d"}, "uplink_message": {"frm_payload": "!!!"}}), ttn.BAD_JSON),
        (json.dumps([1, 2]), ttn.NOT_AN_UPLINK),
    ],
)
def test_bad_documents_are_refused_with_a_reason_and_counted(storage, raw, reason):
    core = ttn.TtnIngest(Ingestor(storage))
    outcome, _, down = core.handle(raw, 1000.0)
    assert isinstance(outcome, ttn.TtnError) and outcome.reason == reason and down is None
    assert core.counts == {reason: 1}
    assert "\n" not in str(outcome)


def test_stored_once_whichever_way_it_arrives_and_radio_kept(storage):
    ingestor = Ingestor(storage)
    core = ttn.TtnIngest(ingestor, {"mpseal-12": DEVICE_ID}, ttn.AckSchedule(plain_every=3600))
    packet = reading(1)
    outcome, up, down = core.handle(json.dumps(uplink_doc(packet)), 1000.0)
    assert outcome.status == STORED and outcome.transport == "lorawan"
    # the first ack goes down (nothing sent to this device yet); compact, like the reading
    assert down is not None and down[0] == mpseal.VERSION_COMPACT and len(down) <= 51
    header, payload = mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)
    assert control.decode_ack(payload)[0] == 1
    assert core.radio[DEVICE_ID] == (-101, -3.5, 70000, "2026-12-01T08:00:00.5Z")
    # the same reading via Wi-Fi, and TTN delivering it twice: stored once, no downlink spent
    assert ingestor.ingest([(packet, "udp")])[0][0].status == DUPLICATE
    outcome, _, down = core.handle(json.dumps(uplink_doc(packet)), 1001.0)
    assert outcome.status == DUPLICATE and down is None
    assert [r["seq"] for r in storage.readings("lora")] == [1]


def test_plain_acks_are_rate_limited_commands_go_at_once(storage):
    core = ttn.TtnIngest(Ingestor(storage), schedule=ttn.AckSchedule(plain_every=3600))
    downs = [core.handle(json.dumps(uplink_doc(reading(seq))), 1000.0 + seq * 60)[2] for seq in range(1, 6)]
    assert [d is not None for d in downs] == [True, False, False, False, False]  # one plain ack an hour
    storage.queue_command("lora", control.set_interval(600))
    down = core.handle(json.dumps(uplink_doc(reading(6))), 1400.0)[2]
    assert down is not None  # carries the command: not held back
    header, payload = mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)
    # a command packet, not the ack: over LoRa the board gets it after its next uplink, when an ack would be stale
    assert header.type == mpseal.TYPE_COMMAND and control.decode_commands(payload) == [control.set_interval(600)]
    assert core.handle(json.dumps(uplink_doc(reading(7))), 1000.0 + 3600 + 400)[2] is not None  # an hour after the last


def test_device_map_refuses_strangers_and_mismatches(storage):
    core = ttn.TtnIngest(Ingestor(storage), {"mpseal-12": DEVICE_ID})
    assert core.handle(json.dumps(uplink_doc(reading(1), device="someone-else")), 1.0)[0].reason == ttn.UNKNOWN_TTN_DEVICE
    other = mpseal.seal(os.urandom(32), 99, 1, b"\x02", version=mpseal.VERSION_COMPACT)
    assert core.handle(json.dumps(uplink_doc(other)), 1.0)[0].reason == ttn.TTN_DEVICE_MISMATCH
    forged = bytearray(reading(1))
    forged[-1] ^= 1
    outcome = core.handle(json.dumps(uplink_doc(bytes(forged))), 1.0)[0]
    assert outcome.status == REJECTED and outcome.reason == "bad_tag"
    assert storage.readings("lora") == []


def test_webhook_checks_the_secret_and_pushes_acks_to_the_downlink_url(storage):
    from aiohttp import ClientSession, web

    from mpseal_host.ttn_service import SECRET_HEADER, WEBHOOK_PATH, webhook_app

    pushed = []

    async def down_push(request):  # stands in for TTS's webhook downlink API
        pushed.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({})

    async def run():
        core = ttn.TtnIngest(Ingestor(storage))
        tts = web.Application()
        tts.router.add_post("/api/v3/as/applications/app/webhooks/mpseal/devices/mpseal-12/down/push", down_push)
        runners = []
        for app in (webhook_app(core, "s3cret-value"), tts):
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append((runner, runner.addresses[0][1]))
        url = "http://127.0.0.1:%d%s" % (runners[0][1], WEBHOOK_PATH)
        push_url = "http://127.0.0.1:%d/api/v3/as/applications/app/webhooks/mpseal/devices/mpseal-12/down/push" % runners[1][1]
        body = json.dumps(uplink_doc(reading(1)))
        results = []
        async with ClientSession() as http:
            for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: "s3cret-value", "X-Downlink-Push": push_url, "X-Downlink-Apikey": "NNSXS.TEST"}):
                async with http.post(url, data=body, headers=headers) as reply:
                    results.append((reply.status, await reply.json()))
            async with http.post(url, data=b"{broken", headers={SECRET_HEADER: "s3cret-value"}) as reply:
                results.append((reply.status, await reply.json()))
        for runner, _ in runners:
            await runner.cleanup()
        return core, results

    core, results = asyncio.run(run())
    assert [status for status, _ in results] == [403, 403, 200, 400]
    assert results[2][1]["status"] == STORED and "ttn_bad_json" in results[3][1]["error"]
    assert core.counts == {"ttn_bad_secret": 2, ttn.BAD_JSON: 1}
    assert len(pushed) == 1 and pushed[0][0] == "Bearer NNSXS.TEST"
    down = base64.b64decode(pushed[0][1]["downlinks"][0]["frm_payload"])
    assert mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)[0].type == mpseal.TYPE_ACK
    assert [r["seq"] for r in storage.readings("lora")] == [1]


def test_secret_compare_refuses_empty_secrets():
    assert not ttn.secret_ok("", "") and not ttn.secret_ok(None, "x") and not ttn.secret_ok("x", None)
    assert ttn.secret_ok("x", "x") and not ttn.secret_ok("x", "y")


def test_mqtt_bridge_backfills_from_the_storage_integration_after_a_reconnect(storage, tmp_path):
    """A real mosquitto, stopped and started again: what TTN received while
    we were away comes from a Storage Integration stand-in (HTTP, TTS's
    newline-delimited {"result": uplink} format), stored once."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    import paho.mqtt.client as mqtt

    from conftest import wait_until
    from mqtt_helpers import Mosquitto
    from mpseal_host.ttn_service import MqttBridge

    docs = []
    for seq in (1, 2, 3):
        doc = uplink_doc(reading(seq), f_cnt=seq)
        doc["uplink_message"]["received_at"] = "2026-12-01T08:00:0%d.25Z" % seq
        docs.append(doc)
    asked = []

    class StorageApi(BaseHTTPRequestHandler):
        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)
            asked.append((urlparse(self.path).path, self.headers.get("Authorization"), query["after"][0]))
            body = "".join(json.dumps({"result": d}) + "\n" for d in docs if d["uplink_message"]["received_at"] > query["after"][0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), StorageApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    broker = Mosquitto(str(tmp_path)).start()
    core = ttn.TtnIngest(Ingestor(storage))
    bridge = MqttBridge(core, "127.0.0.1", broker.port, "app", backfill=("http://127.0.0.1:%d" % api.server_port, "NNSXS.KEY"), reconnect_max=1)
    try:
        bridge.start()
        assert bridge.connected.wait(10)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        publisher.publish(ttn.up_topic("app", device="mpseal-12"), json.dumps(docs[0])).wait_for_publish(5)
        wait_until(lambda: len(storage.readings("lora")) == 1, what="the live uplink stored")
        publisher.loop_stop()
        broker.stop()  # TTN now publishes seq 2 and 3 to nobody (QoS 0)
        wait_until(lambda: not bridge.connected.is_set(), what="the bridge noticed the broker went away")
        broker.start()  # the same port
        wait_until(lambda: bridge.connected.is_set(), timeout=30, what="the bridge reconnected")
        assert [r["seq"] for r in storage.readings("lora")] == [1, 2, 3]
        assert asked == [("/api/v3/as/applications/app/packages/storage/uplink_message", "Bearer NNSXS.KEY", "2026-12-01T08:00:01.25Z")]
        assert bridge.backfilled == 2 and core.radio[DEVICE_ID][2] == 3
    finally:
        bridge.stop()
        broker.stop()
        api.shutdown()


def test_a_flood_of_bad_documents_prints_a_summary_not_a_line_each(storage):
    from mpseal_host.ttn_service import ResultPrinter

    now = [0.0]
    lines = []
    printer = ResultPrinter(limit=5, clock=lambda: now[0], out=lambda text, flush=False: lines.append(text))
    core = ttn.TtnIngest(Ingestor(storage))
    for _ in range(1000):
        printer(core.handle(b"{junk", now[0]))
    now[0] = 1.5
    printer(core.handle(b"{junk", now[0]))
    assert len(lines) == 7 and lines[5] == "ttn: 995 more uplinks not shown in the last second"
    assert lines[0] == "ttn ?: refused, ttn_bad_json: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    assert core.counts == {ttn.BAD_JSON: 1001}


def test_backfill_at_start_begins_before_the_newest_lorawan_reading(storage):
    assert ttn.backfill_start(storage) is None  # nothing came by LoRaWAN yet
    ingestor = Ingestor(storage)
    ingestor.ingest([(reading(1), "udp")], now=1796112000.0)
    assert ttn.backfill_start(storage) is None
    ingestor.ingest([(reading(2), ttn.TRANSPORT)], now=1796112000.0)
    assert ttn.backfill_start(storage) == "2026-12-01T07:55:00.000000Z"  # 08:00 UTC minus the margin
