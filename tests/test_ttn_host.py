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
    s.set_ttn_id("lora", "mpseal-12")  # the registry's mapping (mpseal devices add lora --ttn-id mpseal-12)
    yield s
    s.close()


def reading(seq, version=mpseal.VERSION_COMPACT):
    return mpseal.seal(KEY, DEVICE_ID, seq, encode_values({"temperature": 20.5}), version=version)


def uplink_doc(packet, device="mpseal-12", f_cnt=70000, rssi=-101, snr=-3.5, sf=7):
    return {
        "end_device_ids": {"device_id": device, "application_ids": {"application_id": "app"}, "dev_addr": "260B000C"},
        "received_at": "2026-12-01T08:00:00.5Z",
        "uplink_message": {
            "f_port": 1,
            "f_cnt": f_cnt,
            "frm_payload": base64.b64encode(packet).decode(),
            "rx_metadata": [{"gateway_ids": {"gateway_id": "a"}, "rssi": rssi - 10, "snr": -9}, {"gateway_ids": {"gateway_id": "b"}, "rssi": rssi, "snr": snr}],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": sf, "coding_rate": "4/5"}}},
        },
    }


def test_parse_uplink_takes_the_best_gateway():
    up = ttn.parse_uplink(json.dumps(uplink_doc(b"abc")).encode())
    assert (up.device_id, up.packet, up.f_cnt, up.f_port, up.rssi, up.snr, up.dev_addr) == ("mpseal-12", b"abc", 70000, 1, -101, -3.5, "260B000C")
    assert up.data_rate == 5 and up.max_downlink() == 222
    assert ttn.parse_uplink(json.dumps(uplink_doc(b"abc", sf=12))).max_downlink() == 51
    doc = uplink_doc(b"abc")
    del doc["uplink_message"]["settings"]
    assert ttn.parse_uplink(json.dumps(doc)).max_downlink() == 51  # unknown: DR0's budget fits any RX1


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


def test_stored_once_whichever_way_it_arrives_with_rssi_and_snr(storage):
    ingestor = Ingestor(storage)
    core = ttn.TtnIngest(ingestor, ttn.AckPolicy(after=1))
    packet = reading(1)
    outcome, up, down = core.handle(json.dumps(uplink_doc(packet)), 1000.0)
    assert outcome.status == STORED and outcome.transport == "lorawan"
    # the cumulative ack (policy: after every reading here); compact, like the reading, and fits DR0
    assert down is not None and down[0] == mpseal.VERSION_COMPACT and len(down) <= 51
    header, payload = mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)
    assert header.type == control.TYPE_CUMULATIVE_ACK and control.stored_seqs(*control.decode_cumulative_ack(payload)[:2]) == [1]
    assert core.radio[DEVICE_ID] == (-101, -3.5, 70000, "2026-12-01T08:00:00.5Z")
    # the same reading via Wi-Fi, and TTN delivering it twice: stored once, no downlink spent
    assert ingestor.ingest([(packet, "udp")])[0][0].status == DUPLICATE
    outcome, _, down = core.handle(json.dumps(uplink_doc(packet)), 1001.0)
    assert outcome.status == DUPLICATE and down is None
    rows = storage.readings("lora")
    assert [(r["seq"], r["rssi"], r["snr"]) for r in rows] == [(1, -101, -3.5)]  # the best gateway's, stored with the reading
    ingestor.ingest([(reading(2), "udp")])
    assert "rssi" not in storage.readings("lora")[-1]  # a link without a radio report has none


def test_cumulative_ack_names_what_is_stored_and_carries_commands_once(storage):
    core = ttn.TtnIngest(Ingestor(storage), ttn.AckPolicy(every=10**9, after=10**9))
    for seq in (1, 2, 3, 5, 8):  # 4, 6 and 7 lost on the air
        assert core.handle(json.dumps(uplink_doc(reading(seq))), 1000.0 + seq)[2] is None  # nothing due
    storage.queue_command("lora", control.set_interval(600))
    storage.queue_command("lora", control.read_now())
    down = core.handle(json.dumps(uplink_doc(reading(9))), 1100.0)[2]  # commands wait: due at once
    header, payload = mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)
    highest, bitmap, commands = control.decode_cumulative_ack(payload)
    assert highest == 9 and control.stored_seqs(highest, bitmap) == [9, 8, 5, 3, 2, 1]
    assert commands == [control.set_interval(600), control.read_now()]
    assert len(down) == 51  # 12 + 8 bytes of commands: two blocks, DR0's limit exactly
    assert [c[3] is not None for c in storage.list_commands("lora")] == [True, True]  # marked sent, with this host seq
    assert {c[4] for c in storage.list_commands("lora")} == {header.seq}
    # on demand (mpseal ttn ack-now): a fresh host seq, the commands not again
    again = core.cumulative_ack(DEVICE_ID)
    header2, payload2 = mpseal.unseal(again, KEY, direction=mpseal.TO_DEVICE)
    assert header2.seq == header.seq + 1 and control.decode_cumulative_ack(payload2)[2] == []
    # readings over UDP/HTTP keep getting acks with commands; LoRa readings' own acks never take them
    storage.queue_command("lora", control.reboot())
    ack = Ingestor(storage).ingest([(reading(10), ttn.TRANSPORT)])[0][1]
    assert control.decode_ack(mpseal.unseal(ack, KEY, direction=mpseal.TO_DEVICE)[1]) == (10, [])
    assert storage.unsent_commands(DEVICE_ID) != []


def test_commands_wait_for_a_data_rate_that_fits_them(storage):
    core = ttn.TtnIngest(Ingestor(storage), ttn.AckPolicy(every=10**9, after=10**9))
    storage.queue_command("lora", control.rotate_key(1, os.urandom(32)))  # 35 bytes: beyond DR0's 19
    down = core.handle(json.dumps(uplink_doc(reading(1), sf=12)), 1000.0)[2]
    assert control.decode_cumulative_ack(mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)[1])[2] == []
    assert len(storage.unsent_commands(DEVICE_ID)) == 1
    down = core.handle(json.dumps(uplink_doc(reading(2), sf=9)), 1001.0)[2]  # DR3: 83 bytes of commands
    assert [c[0] for c in control.decode_cumulative_ack(mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)[1])[2]] == [control.CMD_ROTATE_KEY]
    assert (ttn.command_budget(51), ttn.command_budget(115), ttn.command_budget(222)) == (19, 83, 179)


def test_ack_policy_every_n_readings_every_t_seconds_and_the_daily_cap():
    policy = ttn.AckPolicy(every=3600, after=4, per_day=3)
    due = [policy.due(1, False, t) for t in (0, 10, 20, 30)]
    assert due == [False, False, False, True]  # the 4th reading since the device was first heard
    policy.sent(1, 30)
    assert not policy.due(1, False, 40) and policy.due(1, False, 30 + 3600)  # an hour later
    policy.sent(1, 3630)
    assert policy.due(1, True, 3640)  # commands wait: at once
    policy.sent(1, 3640)
    assert not policy.due(1, True, 3650)  # 3 in 24 h: the cap holds, even for commands
    assert policy.due(1, True, 30 + 24 * 3600)  # the first one left the 24 h window


def test_ttn_ids_map_through_the_registry_unknown_ones_refused_and_counted(storage):
    core = ttn.TtnIngest(Ingestor(storage))
    outcome = core.handle(json.dumps(uplink_doc(reading(1), device="someone-else")), 1.0)[0]
    assert outcome.reason == ttn.UNKNOWN_TTN_DEVICE and "someone-else" in str(outcome) and "\n" not in str(outcome)
    other = mpseal.seal(os.urandom(32), 99, 1, b"\x02", version=mpseal.VERSION_COMPACT)
    assert core.handle(json.dumps(uplink_doc(other)), 1.0)[0].reason == ttn.TTN_DEVICE_MISMATCH
    forged = bytearray(reading(1))
    forged[-1] ^= 1
    outcome = core.handle(json.dumps(uplink_doc(bytes(forged))), 1.0)[0]
    assert outcome.status == REJECTED and outcome.reason == "bad_tag"
    assert storage.readings("lora") == []
    totals, per_device = storage.rejection_counts()  # what `mpseal stats` and the page show
    assert totals[ttn.UNKNOWN_TTN_DEVICE] == 1 and per_device["(unregistered)"][ttn.UNKNOWN_TTN_DEVICE] == 1
    assert per_device["lora"][ttn.TTN_DEVICE_MISMATCH] == 1
    # re-mapped in the registry: the next uplink is taken
    storage.set_ttn_id("lora", "someone-else")
    assert core.handle(json.dumps(uplink_doc(reading(1), device="someone-else")), 2.0)[0].status == STORED
    storage.add_device("other", key=os.urandom(32))
    with pytest.raises(Exception, match="belongs to device 'lora'"):
        storage.set_ttn_id("other", "someone-else")
    with pytest.raises(Exception, match="TTN device id is 2..36"):
        storage.set_ttn_id("other", "Not_Valid")


def test_webhook_checks_the_secret_and_pushes_acks_to_the_downlink_url(storage):
    from aiohttp import ClientSession, web

    from mpseal_host.ttn_service import SECRET_HEADER, WEBHOOK_PATH, webhook_app

    pushed = []

    async def down_push(request):  # stands in for TTS's webhook downlink API
        pushed.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({})

    async def run():
        core = ttn.TtnIngest(Ingestor(storage), ttn.AckPolicy(after=1))
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
    assert mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)[0].type == control.TYPE_CUMULATIVE_ACK
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
        assert bridge.connected.wait(30)  # set once the broker acknowledged the subscription (SUBACK)
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


def test_ttn_ids_on_the_command_line(tmp_path):
    """`mpseal devices add --ttn-id`, `devices set-ttn-id`, `ttn ack-now`:
    mistakes are one `mpseal:` line, no traceback."""
    from conftest import mpseal_cli

    db = str(tmp_path / "cli.sqlite")

    def run(*args):
        result = mpseal_cli(*args, "--db", db) if args[0] != "ttn" else mpseal_cli(*args[:3], "--db", db, *args[3:])
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    code, out, err = run("devices", "add", "lora", "--ttn-id", "eui-70b3d57ed0001234")
    assert code == 0 and "TTN device eui-70b3d57ed0001234" in out, err
    for args, what in [
        (("devices", "add", "other", "--ttn-id", "eui-70b3d57ed0001234"), "belongs to device 'lora' already"),
        (("devices", "add", "third", "--ttn-id", "Bad_Id"), "a TTN device id is 2..36"),
        (("devices", "set-ttn-id", "nobody", "x-1"), "no device 'nobody'"),
        (("ttn", "ack-now", "nobody", "--mqtt", "127.0.0.1:1", "--application", "app"), "no device 'nobody'"),
    ]:
        code, out, err = run(*args)
        assert code == 1 and "Traceback" not in err and err.strip().count("\n") == 0 and what in err, (args, err)
    assert run("devices", "set-ttn-id", "lora", "none")[0] == 0
    code, out, err = run("ttn", "ack-now", "lora", "--mqtt", "127.0.0.1:1", "--application", "app")
    assert code == 1 and "has no TTN device id" in err and "Traceback" not in err, err
    listed = json.loads(run("devices", "list", "--json")[1])
    assert [d["ttn_id"] for d in listed] == [None]


def test_ack_now_pushes_a_cumulative_ack_with_waiting_commands_through_a_real_broker(storage, tmp_path):
    import threading

    import paho.mqtt.client as mqtt

    from conftest import mpseal_cli
    from mqtt_helpers import Mosquitto

    Ingestor(storage).ingest([(reading(5), ttn.TRANSPORT)])
    storage.queue_command("lora", control.set_interval(900))
    broker = Mosquitto(str(tmp_path)).start()
    got, ready = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe(ttn.down_push_topic("app", "ttn", "mpseal-12"), qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    try:
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert ready.wait(10)
        result = mpseal_cli("ttn", "ack-now", "lora", "--db", storage.path, "--mqtt", "127.0.0.1:%d" % broker.port, "--application", "app")
        assert result.returncode == 0, result.stderr.decode()
        from conftest import wait_until

        wait_until(lambda: got, what="the down/push document")
    finally:
        client.loop_stop()
        broker.stop()
    down = base64.b64decode(got[0]["downlinks"][0]["frm_payload"])
    header, payload = mpseal.unseal(down, KEY, direction=mpseal.TO_DEVICE)
    highest, bitmap, commands = control.decode_cumulative_ack(payload)
    assert header.type == control.TYPE_CUMULATIVE_ACK and highest == 5 and commands == [control.set_interval(900)]
    assert len(down) <= 51 and got[0]["downlinks"][0]["f_port"] == 1
    assert storage.unsent_commands(DEVICE_ID) == []
