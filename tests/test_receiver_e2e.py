"""A real `mpseal receive` on loopback, driven by the `mpseal` CLI and sockets."""
import json
import os
import stat

import pytest

import mpseal
from mpseal import control, payload
from conftest import mpseal_cli
from mpseal_host.storage import Storage
from conftest import wait_until
from receiver_helpers import RunningReceiver

pytestmark = pytest.mark.slow


def cli(*args, ok=True):
    result = mpseal_cli(*args)
    if ok:
        assert result.returncode == 0, result.stderr.decode()
    return result


def add_device(db, name):
    out = cli("devices", "add", name, "--db", db).stdout.decode()
    key = [line.split()[1] for line in out.splitlines() if line.startswith("key: ")][0]
    device_id = int(out.split(" id ")[1].split(",")[0])
    return device_id, bytes.fromhex(key)


def reading(key, device_id, seq, **values):
    return mpseal.seal(key, device_id, seq, payload.encode_values(values or {"temperature": 20 + seq / 10}))


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "mpseal.sqlite")


def test_devices_cli_add_list_remove(db):
    device_id, key = add_device(db, "greenhouse")
    assert device_id == 1 and len(key) == 32
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    given = "ab" * 32
    out = cli("devices", "add", "shed", "--key", given, "--epoch", "2", "--db", db).stdout.decode()
    assert given not in out, "a key given on the command line is not echoed"
    listed = json.loads(cli("devices", "list", "--json", "--db", db).stdout)
    assert [(d["name"], d["epoch"]) for d in listed] == [("greenhouse", 0), ("shed", 2)]
    table = cli("devices", "list", "--db", db).stdout.decode()
    assert "greenhouse" in table and key.hex() not in table
    again = cli("devices", "add", "shed", "--db", db, ok=False)
    assert again.returncode == 1 and again.stderr.decode().startswith("mpseal: device 'shed' exists already")
    bad = cli("devices", "add", "x", "--key", "zz", "--db", db, ok=False)
    assert bad.returncode == 1 and b"hexadecimal" in bad.stderr
    unasked = cli("devices", "remove", "shed", "--db", db, ok=False)  # no terminal to ask on, no --yes
    assert unasked.returncode == 1 and b"--yes" in unasked.stderr
    assert "shed" in cli("devices", "list", "--db", db).stdout.decode()
    assert b"its 0 readings" in cli("devices", "remove", "shed", "--yes", "--db", db).stdout
    gone = cli("devices", "remove", "shed", "--yes", "--db", db, ok=False)
    assert gone.returncode == 1 and b"no device 'shed'" in gone.stderr


def test_cli_says_what_is_wrong_with_the_database(tmp_path):
    missing = cli("devices", "list", "--db", str(tmp_path / "no" / "such.sqlite"), ok=False)
    assert missing.returncode == 1 and missing.stderr.decode().startswith("mpseal: no receiver database")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = cli("stats", "--db", str(junk), ok=False)
    assert result.returncode == 1 and b"file is not a database" in result.stderr and b"Traceback" not in result.stderr


def test_command_cli_refuses_bad_arguments(db):
    add_device(db, "greenhouse")
    assert b"needs SECONDS" in cli("command", "greenhouse", "set-interval", "--db", db, ok=False).stderr
    assert b"no device" in cli("command", "nope", "reboot", "--db", db, ok=False).stderr
    assert b"takes no argument" in cli("command", "greenhouse", "reboot", "5", "--db", db, ok=False).stderr


def test_udp_and_http_store_ack_and_survive_a_restart(db):
    device_id, key = add_device(db, "greenhouse")
    receiver = RunningReceiver(db)
    try:
        ack = receiver.udp_exchange(reading(key, device_id, 1, temperature=21.5, humidity=40))
        header, body = mpseal.unseal(ack, key, direction=mpseal.TO_DEVICE)
        assert header.type == mpseal.TYPE_ACK and control.decode_ack(body) == (1, [])
        status, body, headers = receiver.post(reading(key, device_id, 2, temperature=22.0))
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert control.decode_ack(mpseal.unseal(body, key, direction=mpseal.TO_DEVICE)[1])[0] == 2

        # a lost ack: the same packet again is acked again, stored once
        again = receiver.udp_exchange(reading_1 := reading(key, device_id, 3))
        assert receiver.udp_exchange(reading_1) is not None and again is not None
        status, latest = receiver.get("/api/readings/latest")
        assert latest["latest"]["greenhouse"]["seq"] == 3

        # downlink: queued by the CLI, delivered in the next ack
        assert b"queued set-interval" in cli("command", "greenhouse", "set-interval", "120", "--db", db).stdout
        ack = receiver.udp_exchange(reading(key, device_id, 4))
        assert control.decode_ack(mpseal.unseal(ack, key, direction=mpseal.TO_DEVICE)[1]) == (4, [control.set_interval(120)])
    finally:
        code, out, err = receiver.stop()
    assert code == 0 and "stopped" in out, err
    assert key.hex() not in err, "keys are never logged"

    receiver = RunningReceiver(db)  # the replay window came back from the database
    try:
        assert receiver.udp_exchange(reading(key, device_id, 2, temperature=22.0)) is not None  # stored: re-acked
        status, body, _ = receiver.post(mpseal.seal(key, device_id, 2, payload.encode_values({"temperature": 99})))
        assert (status, json.loads(body)) == (409, {"error": "seq_reused"})
        status, rows = receiver.get("/api/devices/greenhouse/readings")
        assert [r["seq"] for r in rows["readings"]] == [1, 2, 3, 4]
        assert rows["readings"][0]["value"] == {"temperature": 21.5, "humidity": 40}
    finally:
        assert receiver.stop()[0] == 0

    stats = json.loads(cli("stats", "--json", "--db", db).stdout)
    assert (stats["stored"], stats["duplicates"], stats["rejected_by_reason"]) == (4, 2, {"seq_reused": 1})
    assert "seq_reused 1" in cli("stats", "--db", db).stdout.decode()


def test_api_endpoints(db):
    device_id, key = add_device(db, "greenhouse")
    add_device(db, "shed")
    receiver = RunningReceiver(db)
    try:
        for seq in range(1, 6):
            assert receiver.udp_exchange(reading(key, device_id, seq)) is not None
        assert receiver.get("/healthz") == (200, {"ok": True, "udp": list(receiver.udp), "http": list(receiver.http),
                                                  "database": db, "storage_waiting_for_lock": False})
        status, devices = receiver.get("/api/devices")
        by_name = {d["name"]: d for d in devices["devices"]}
        assert by_name["greenhouse"]["stored"] == 5 and by_name["greenhouse"]["last_transport"] == "udp"
        assert by_name["greenhouse"]["latest"]["seq"] == 5 and by_name["shed"]["latest"] is None
        assert all("key" not in k for d in devices["devices"] for k in d)
        status, rows = receiver.get("/api/devices/greenhouse/readings?since=2&limit=2")
        assert [r["seq"] for r in rows["readings"]] == [4, 5]
        assert receiver.get("/api/devices/nope/readings") == (404, {"error": "unknown_device", "device": "nope"})
        for query in ("limit=0", "limit=abc", "limit=100000", "since=-1", "since=nan"):
            status, body = receiver.get("/api/devices/greenhouse/readings?" + query)
            assert status == 400 and body["error"] == "bad_query", query
        status, stats = receiver.get("/api/stats")
        assert stats["stored"] == 5 and stats["receiver"]["udp_datagrams"] == 5
    finally:
        assert receiver.stop()[0] == 0


def test_receive_refuses_a_port_in_use(db):
    receiver = RunningReceiver(db)
    try:
        result = cli("receive", "--db", db, "--udp", "%s:%d" % receiver.udp, "--http", "off", ok=False)
        assert result.returncode == 1 and result.stderr.decode().startswith("mpseal: cannot listen")
        bad = cli("receive", "--db", db, "--udp", "nonsense", ok=False)
        assert b"HOST:PORT" in bad.stderr
    finally:
        receiver.stop()


def test_a_picked_port_taken_before_the_receiver_binds_it_is_picked_again(tmp_path):
    """ReceiverProcess (the demo's and the e2e tests' receiver) picks free
    ports, and another process can take one before `mpseal receive` binds it
    (five suites on one machine did). Its first start then picks again; a
    port given to it stays, and a restart keeps its ports."""
    import socket

    from mpseal_tools.receiver_proc import ReceiverProcess

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        rx = ReceiverProcess(tmp_path / "rx")
        rx.api_port = taken.getsockname()[1]  # as if taken between the pick and the bind
        rx.start()
        try:
            assert rx.api_port != taken.getsockname()[1] and rx.api("/healthz")
            ports = (rx.udp_port, rx.http_port, rx.api_port)
            rx.stop()
            rx.start()
            assert (rx.udp_port, rx.http_port, rx.api_port) == ports
        finally:
            rx.stop()
        given = ReceiverProcess(tmp_path / "given", api_port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="(?i)address already in use"):
            given.start()
    finally:
        taken.close()


def test_sigterm_under_load_loses_no_acked_reading(db):
    device_id, key = add_device(db, "greenhouse")
    receiver = RunningReceiver(db)
    acked = set()
    receiver.sock.settimeout(0.5)
    try:
        for seq in range(1, 301):
            receiver.sock.sendto(reading(key, device_id, seq), receiver.udp)
        wait_until(lambda: receiver.get("/api/stats")[1]["stored"] > 0, what="first readings stored")
    finally:
        receiver.proc.terminate()  # SIGTERM while datagrams are still queued
        while True:
            try:
                ack = receiver.sock.recvfrom(4096)[0]
            except OSError:
                break
            acked.add(control.decode_ack(mpseal.unseal(ack, key, direction=mpseal.TO_DEVICE)[1])[0])
        code, _, err = receiver.stop()
    assert code == 0, err
    storage = Storage(db)
    stored = {r["seq"] for r in storage.readings("greenhouse", limit=10000)}
    storage.close()
    assert acked and acked <= stored
