"""The real firmware on the unix port sending readings as LoRaWAN frames:
board (simulated SX1276 register file; there is no radio here) -> the air
(loopback UDP) -> gateway + network-server stand-in doing what TTN does
(mpseal_tools.sim.lorawan_ns) -> a real mosquitto broker -> an MQTT client.
Every frame is also decoded by npm lora-packet, an independent LoRaWAN
implementation, which must agree byte for byte."""
import base64
import json
import os
import random
import threading
import time

import pytest

from lorawan_helpers import mosquitto, oracle  # noqa: F401 (fixtures)
from mpseal import VERSION_COMPACT, unseal
from mpseal.control import TYPE_CUMULATIVE_ACK, encode_cumulative_ack, read_now, set_interval
from mpseal.payload import decode_values
from mpseal_tools.sim import unix_board
from mpseal_tools.sim.lorawan_ns import GatewaySim, NetworkServerSim

pytestmark = pytest.mark.slow
DEVICE_ID = 7
TTN_DEVICE = "mpseal-7"
DEV_ADDR = 0x260B0007
APP = "mpseal-app"
# The LoRa board runs in the 48k target with its modules in ROMFS (the
# default install), always-on and in interval mode (deep sleep): little to
# spare (docs/lorawan.md "Memory").
HEAP = unix_board.TARGET_HEAP
_downlink_heap = []


def downlink_heap():
    """For the tests that open downlinks: the 48k target plus exactly what
    the simulated SX1276 costs, measured as `make bench` does (module,
    register file, datagram buffer, socket: ~2.5 KB of the board's heap that
    a real board keeps in the chip). At 48k flat, the stand-in's own heap
    left no free 320-byte block for an AES object now and then (a loaded
    full run failed here with MemoryError); uplink-only and deep-sleep
    tests stay at 48k flat."""
    if not _downlink_heap:
        from mpseal_tools.bench.lorawan import simulated_chip_heap

        _downlink_heap.append("%d" % (48 * 1024 + simulated_chip_heap()))
    return _downlink_heap[0]


class Air:
    """Key material, the NS + gateway stand-ins, an MQTT client collecting
    what TTN would publish, and simulated boards."""

    def __init__(self, tmp_path, broker, monkeypatch):
        import paho.mqtt.client as mqtt

        self.tmp = tmp_path
        self.key = os.urandom(32)
        self.nwk = os.urandom(16)
        self.app = os.urandom(16)
        self.ns = NetworkServerSim("127.0.0.1", broker.port, application=APP)
        self.ns.add_device(TTN_DEVICE, DEV_ADDR, self.nwk, self.app)
        self.gateway = GatewaySim(self.ns)
        monkeypatch.setenv("MPSEAL_LORA_AIR", self.gateway.address)
        self.up = []
        ready = threading.Event()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.mqtt.on_connect = lambda c, *a: c.subscribe("v3/%s@ttn/devices/+/up" % APP)
        self.mqtt.on_subscribe = lambda *a: ready.set()
        self.mqtt.on_message = lambda c, u, m: self.up.append(json.loads(m.payload))
        self.mqtt.connect("127.0.0.1", broker.port)
        self.mqtt.loop_start()
        assert ready.wait(10), "no SUBACK from mosquitto"
        self.boards = []

    def board(self, seq=None, heapsize=HEAP, **changes):
        config = {
            "device_id": DEVICE_ID,
            "key": self.key.hex(),
            "receiver": {"host": "127.0.0.1"},
            "transports": ["lorawan"],
            "lorawan": {"dev_addr": "%08x" % DEV_ADDR, "nwk_s_key": self.nwk.hex(), "app_s_key": self.app.hex(), "data_rate": 5},
            "sensors": [{"type": "synthetic"}],
            "interval_s": 3,
            "log": True,
        }
        config.update(changes)
        flash = self.tmp / ("flash%d" % len(self.boards))
        unix_board.install(flash, config)
        if seq is not None:  # a board that has sent for a while: its reservation in /seq.dat (= the FCnt)
            (flash / "seq.dat").write_bytes(b"%d %d\n" % (seq, seq))
        board = unix_board.Board(flash, heapsize=heapsize, log_path=self.tmp / ("board%d.log" % len(self.boards)))
        self.boards.append(board)
        return board

    def push(self, packet):
        """What `mpseal ttn` does to schedule a downlink: TTS v3 down/push."""
        doc = {"downlinks": [{"f_port": 1, "frm_payload": base64.b64encode(packet).decode(), "priority": "NORMAL"}]}
        self.mqtt.publish("v3/%s@ttn/devices/%s/down/push" % (APP, TTN_DEVICE), json.dumps(doc)).wait_for_publish(5)

    def close(self):
        for board in self.boards:
            board.stop()
        self.gateway.close()
        self.ns.close()
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


@pytest.fixture
def air(tmp_path, mosquitto, monkeypatch):  # noqa: F811
    a = Air(tmp_path, mosquitto, monkeypatch)
    yield a
    a.close()


def unacked(board):
    """The seqs of the frames the board keeps until a cumulative ack (its /unacked folder)."""
    folder = board.flash / "unacked"
    return sorted(int(n, 16) for n in os.listdir(folder) if "." not in n) if folder.exists() else []


def numbers(board, word):
    return [int(line.split()[1]) for line in list(board.lines) if line.startswith(word + " ")]


def test_readings_cross_65535_frames_and_agree_with_lora_packet(air, oracle):  # noqa: F811
    board = air.board(seq=65534).start()
    board.wait_for(lambda b: len(air.up) >= 3, timeout=60)
    board.stop()
    fcnts = [doc["uplink_message"]["f_cnt"] for doc in air.up]
    assert fcnts[:3] == [65534, 65535, 65536], fcnts  # the 16 bits on air roll over; TTN's 32-bit count does not
    seqs = []
    for (phy, meta), doc in zip(air.gateway.frames, air.up):
        up = doc["uplink_message"]
        assert doc["end_device_ids"]["device_id"] == TTN_DEVICE and up["f_port"] == 1
        assert meta["dr"] == 5 and up["settings"]["data_rate"]["lora"]["spreading_factor"] == 7
        frm = base64.b64decode(up["frm_payload"])
        # the independent decoder: same FCnt, MIC valid, same FRMPayload
        got = oracle.decode(phy, air.nwk, air.app, up["f_cnt"])
        assert got["mic_ok"] and got["fcnt16"] == up["f_cnt"] & 0xFFFF and got["dev_addr"] == "%08x" % DEV_ADDR
        assert bytes.fromhex(got["payload"]) == frm
        # what TTN sees is our sealed compact packet, which only the mpseal key opens
        assert frm[0] == VERSION_COMPACT and len(frm) <= 51
        header, payload = unseal(frm, air.key)
        assert header.device_id == DEVICE_ID and header.seq == up["f_cnt"]  # the FCnt is the mpseal sequence number
        assert "temperature" in decode_values(payload)
        seqs.append(header.seq)
    assert seqs == sorted(set(seqs))
    assert air.gateway.refused == {} and air.ns.counts.get("bad_mic", 0) == 0


def test_power_cuts_never_reuse_a_frame_counter(air):
    board = air.board().start()
    rnd = random.Random(16)
    for cut in range(8):
        heard = len(air.gateway.frames)
        board.wait_for(lambda b: len(air.gateway.frames) > heard or rnd.random() < 0.02, timeout=30)
        board.power_cut()  # SIGKILL at a random moment: boot, TX, an RX window, writing /fcnt.dat
        board.wait_for(lambda b: b.process is not None, timeout=5)
        time.sleep(rnd.uniform(0.0, 1.0))
    board.wait_for(lambda b: len(air.ns.uplinks) >= 6, timeout=60)
    board.stop()
    fcnts = [doc["uplink_message"]["f_cnt"] for doc in air.ns.uplinks]
    assert fcnts == sorted(set(fcnts)), fcnts  # strictly increasing across every cut
    assert air.ns.counts.get("fcnt_replay", 0) == 0 and air.ns.counts.get("bad_mic", 0) == 0
    assert int((board.flash / "seq.dat").read_bytes().split()[0]) > fcnts[-1]


def test_a_reset_frame_counter_is_what_ttn_refuses(air):
    """The check the test above relies on can fail: a board whose /seq.dat
    is lost starts again at 1, and the network server drops its frames."""
    board = air.board(seq=500).start()
    board.wait_for(lambda b: len(air.ns.uplinks) >= 1, timeout=30)
    board.stop()
    (board.flash / "seq.dat").unlink()
    board.start()
    board.wait_for(lambda b: air.ns.counts.get("fcnt_replay", 0) >= 1, timeout=30)
    board.stop()


def test_a_cumulative_ack_in_rx1_releases_frames_its_command_obeyed_once_a_replay_refused(air):
    # every 10 s: within DR5's duty cycle, so no backlog builds up in the app's queue (at 48k a
    # downlink arriving while a backlog is flushed still hits a MemoryError now and then, in the
    # simulated chip's socket receive: docs/lorawan.md "Memory")
    board = air.board(interval_s=10, heapsize=downlink_heap()).start()
    board.wait_for(lambda b: len(unacked(b)) >= 2, timeout=60)  # on air, kept until acked
    sent = [doc["uplink_message"]["f_cnt"] for doc in air.ns.uplinks[:2]]
    assert unacked(board)[:2] == sent
    # what mpseal ttn sends: the stored seqs (highest + bitmap) and a command, under a fresh host seq
    ack = encode_cumulative_ack(sent[1], 0b11, [set_interval(12), read_now()])
    packet = __import__("mpseal").seal(air.key, DEVICE_ID, 1, ack, type=TYPE_CUMULATIVE_ACK, version=VERSION_COMPACT)
    air.push(packet)
    board.wait_for(lambda b: any(line.startswith("command set-interval") for line in b.lines), timeout=60)
    assert air.ns.counts.get("downlinks") == 1
    board.wait_for(lambda b: any("cumulative ack up to %d: 2 released" % sent[1] in line for line in b.lines), timeout=10)
    assert not set(sent) & set(unacked(board))
    air.push(packet)  # the same sealed ack again (a new LoRaWAN frame around it): refused, nothing runs
    board.wait_for(lambda b: air.ns.counts.get("downlinks", 0) == 2, timeout=60)
    board.wait_for(lambda b: b.stats and b.stats.get("replayed", 0) >= 1, timeout=60)
    board.stop()
    assert sum(line.startswith("command set-interval") for line in board.lines) == 1
    assert sum("cumulative ack up to" in line for line in board.lines) == 1
    assert json.loads((board.flash / "config.json").read_text())["interval_s"] == 12
    assert not [line for line in board.lines if "MemoryError" in line]


class TtnProcess:
    """`mpseal ttn --mqtt ...` as an operator runs it, on the receiver's database."""

    def __init__(self, db, broker, workdir, *extra):
        import subprocess

        self.log_path = workdir / "ttn.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(__import__("sys").executable), "mpseal"), "ttn", "--db", str(db), "--mqtt", "127.0.0.1:%d" % broker.port, "--application", APP] + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def lines(self):
        return self.log_path.read_text().splitlines()

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def test_readings_reach_mpseal_ttn_once_and_a_queued_command_comes_back_in_rx1(air, mosquitto, tmp_path):  # noqa: F811
    from mpseal_tools.receiver_proc import ReceiverProcess
    from conftest import wait_until

    receiver = ReceiverProcess(tmp_path / "rx")
    receiver.add_device("lora", air.key, DEVICE_ID)
    receiver.cli("devices", "set-ttn-id", "lora", TTN_DEVICE)  # the registry maps TTN's device id
    receiver.start()
    ttn = TtnProcess(receiver.db, mosquitto, tmp_path, "--ack-every", "100000", "--ack-after", "100000")
    try:
        wait_until(lambda: any("subscribed to" in line for line in ttn.lines()), timeout=30, what="mpseal ttn subscribed")
        receiver.cli("command", "lora", "set-interval", "4")
        board = air.board(heapsize=downlink_heap()).start()
        board.wait_for(lambda b: any(line.startswith("command set-interval") for line in b.lines), timeout=60)
        wait_until(lambda: len(receiver.readings("lora")) >= 3, timeout=60, what="3 readings stored")
        board.stop()
        assert json.loads((board.flash / "config.json").read_text())["interval_s"] == 4
        # the first stored reading's cumulative ack carried the command: sent at once, in RX1 of the next uplink
        assert air.ns.counts.get("downlinks") == 1
        rows = receiver.readings("lora")  # the readings JSON API
        assert all(r["transport"] == "lorawan" and (r["rssi"], r["snr"]) == (-57, 9.5) for r in rows)
        seqs = [r["seq"] for r in rows]
        assert seqs == sorted(set(seqs))
        # the same reading again, via Wi-Fi (UDP) and replayed on MQTT: stored once
        import socket

        frm = base64.b64decode(air.ns.uplinks[0]["uplink_message"]["frm_payload"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(frm, ("127.0.0.1", receiver.udp_port))
            s.recv(512)  # the ack of a duplicate
        air.mqtt.publish("v3/%s@ttn/devices/%s/up" % (APP, TTN_DEVICE), json.dumps(air.ns.uplinks[0])).wait_for_publish(5)
        wait_until(lambda: sum("duplicate" in line for line in ttn.lines()) >= 1, timeout=20, what="mpseal ttn saw the replay")
        assert not [line for line in ttn.lines() if "duplicate" in line and "ack queued" in line]  # no downlink spent on it
        assert [r["seq"] for r in receiver.readings("lora")].count(seqs[0]) == 1
        assert any("rssi -57 snr 9.5" in line for line in ttn.lines())
        # a TTN device no registered device is mapped to: refused with one line, counted
        stranger = dict(air.ns.uplinks[0], end_device_ids={"device_id": "stranger-1", "dev_addr": "260B0099"})
        air.mqtt.publish("v3/%s@ttn/devices/stranger-1/up" % APP, json.dumps(stranger)).wait_for_publish(5)
        wait_until(lambda: any("stranger-1" in line for line in ttn.lines()), timeout=20, what="mpseal ttn refused the stranger")
        assert [line for line in ttn.lines() if "stranger-1" in line] == [
            "ttn stranger-1: refused, ttn_unknown_device: stranger-1 is no device's TTN id (mpseal devices set-ttn-id NAME stranger-1)"]
        stats = json.loads(receiver.cli("stats", "--json"))
        assert stats["rejected_by_reason"]["ttn_unknown_device"] == 1
    finally:
        ttn.close()
        receiver.stop()


def test_a_reading_lost_on_the_air_is_resent_after_the_cumulative_ack_shows_the_gap(air, mosquitto, tmp_path):  # noqa: F811
    from mpseal_tools.receiver_proc import ReceiverProcess
    from conftest import wait_until

    receiver = ReceiverProcess(tmp_path / "rx")
    receiver.add_device("lora", air.key, DEVICE_ID)
    receiver.cli("devices", "set-ttn-id", "lora", TTN_DEVICE)
    receiver.start()
    ttn = TtnProcess(receiver.db, mosquitto, tmp_path, "--ack-after", "3")  # a cumulative ack after every 3 new readings
    try:
        wait_until(lambda: any("subscribed to" in line for line in ttn.lines()), timeout=30, what="mpseal ttn subscribed")
        air.gateway.lose = {2}  # seq 2's frame (FCnt 2) never reaches the network server
        # every 10 s: DR5's 1 % duty cycle gives each of the two sub-bands a frame per 9.75 s, so the
        # readings and the resend go out as they come instead of piling up in the app's queue (a
        # backlog + downlink at 48k: docs/lorawan.md "Memory")
        board = air.board(interval_s=10, heapsize=downlink_heap()).start()
        wait_until(lambda: 2 in [r["seq"] for r in receiver.readings("lora")], timeout=180, what="seq 2 resent and stored")
        wait_until(lambda: sum("cumulative ack up to" in line for line in board.lines) >= 2, timeout=180, what="a later ack released it")
        board.stop()
        assert air.gateway.lost == [2]
        first = next(line for line in board.lines if "cumulative ack up to" in line)
        assert "1 to resend" in first, board.lines
        resent = [line for line in board.lines if line.startswith("mpseal lorawan: resent 2 as FCnt ")]
        assert len(resent) == 1, board.lines
        fcnt = int(resent[0].split()[-1])
        # on the air: the same sealed packet (seq 2) under a fresh, higher FCnt, which TTN accepts
        doc = next(d for d in air.ns.uplinks if d["uplink_message"]["f_cnt"] == fcnt)
        assert unseal(base64.b64decode(doc["uplink_message"]["frm_payload"]), air.key)[0].seq == 2
        fcnts = [d["uplink_message"]["f_cnt"] for d in air.ns.uplinks]
        assert fcnts == sorted(set(fcnts)) and air.ns.counts.get("fcnt_replay", 0) == 0
        seqs = [r["seq"] for r in receiver.readings("lora")]
        assert seqs.count(2) == 1 and fcnt not in seqs  # the resend's FCnt is burnt: never a reading's seq
        assert 2 not in unacked(board)  # released by the next ack
        assert not [line for line in board.lines if "MemoryError" in line]
    finally:
        ttn.close()
        receiver.stop()


def test_deep_sleep_wakes_count_on_without_gaps_or_flash_writes(air):
    """Interval mode: the FCnt (= mpseal sequence number) comes back exact
    from RTC memory after each deep sleep, so it grows by one per wake and
    /seq.dat is written once per 64 readings, not once per wake."""
    board = air.board(power="interval", interval_s=10, heapsize=HEAP).start()  # DR5: a 48-byte frame needs 9.75 s off
    board.wait_for(lambda b: len(air.ns.uplinks) >= 3, timeout=90)
    board.stop()
    fcnts = [doc["uplink_message"]["f_cnt"] for doc in air.ns.uplinks]
    assert fcnts[:3] == [fcnts[0], fcnts[0] + 1, fcnts[0] + 2], fcnts
    assert board.restarts >= 2  # each reading in its own wake
    assert (board.flash / "seq.dat").read_bytes() == b"65 65\n"  # one reservation, written once
