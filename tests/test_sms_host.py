"""The host's SMS paths: the modem receiver (host/mpseal_host/modem_receiver.py
over host/mpseal_host/modem.py, text and PDU mode) against a simulated modem
(a GSM radio cannot exist here), and `mpseal sms-ingest` as gammu-smsd runs it.
Bad input of every kind is refused, counted, and never stops the receiver."""
import base64
import os

import mpseal
import pytest
from mpseal import payload

from mpseal_host import modem_receiver
from mpseal_host.modem_receiver import ModemReceiver
from mpseal_host.pipeline import REJECTED, Outcome
from mpseal_host.rejections import STORAGE_ERROR
from mpseal_host.sms_ingest import SmsIngest
from mpseal_host.storage import Storage
from mpseal_tools.sim.gsm_network import Network
from mpseal_tools.sim.modem import SimModem
from conftest import wait_until
from sms_helpers import BOARD_NUMBER, DEVICE_ID, HOST_NUMBER, run_cli, stats, stored_seqs

STRANGER = "+4917699999999"


def _reading(key, seq):
    return mpseal.seal(key, DEVICE_ID, seq, payload.encode_values({"temperature": 20.5, "humidity": 40.0, "battery": 3.9}))


def _text(packet):
    return base64.b64encode(packet).decode()


@pytest.fixture
def db(tmp_path):
    key = os.urandom(32)
    path = tmp_path / "mpseal.sqlite"
    storage = Storage(str(path))
    storage.add_device("field", key=key, device_id=DEVICE_ID)
    storage.set_allowed_numbers("field", [BOARD_NUMBER])
    storage.close()
    return path, key


def _receiver(db_path, port, pdu_mode=False):
    receiver = ModemReceiver(str(db_path), port, pdu_mode=pdu_mode, sweep_s=0.5)
    return receiver.start()


@pytest.mark.parametrize("pdu_mode", [False, True], ids=["text", "pdu"])
def test_bad_sms_are_refused_and_counted_and_the_good_one_is_acked(db, pdu_mode):
    db_path, key = db
    network = Network()
    board = SimModem(BOARD_NUMBER, network)
    host = SimModem(HOST_NUMBER, network)
    board.start()
    port = host.start()
    host.inject(BOARD_NUMBER, "hello, this is no packet")
    host.inject(BOARD_NUMBER, "QUFB" * 50)  # 200 characters: longer than one SMS
    host.inject(STRANGER, _text(_reading(key, 1)))  # verifies, but from the wrong phone
    host.inject(BOARD_NUMBER, _text(_reading(os.urandom(32), 2)))  # forged: wrong key
    host.fail_next("noise")  # a line of junk before the first reply
    receiver = _receiver(db_path, port, pdu_mode)
    try:
        wait_until(lambda: stats(db_path)["rejected"] >= 4, 30, "four rejections")
        host.fail_next("garbage")  # reading the next SMS: junk instead of a reply
        host.fail_next("truncate")  # and the listing after it is cut off
        network.submit(BOARD_NUMBER, HOST_NUMBER, _text(_reading(key, 3)))  # arrives while running: +CMTI
        wait_until(lambda: stored_seqs(db_path) == [3], 30, "the good reading")
        wait_until(lambda: board.storage, 30, "the ack SMS at the board")
    finally:
        receiver.stop()
        board.stop()
        host.stop()
    counts = stats(db_path)["rejected_by_reason"]
    assert counts == {"not_base64": 1, "oversize": 1, "unknown_sender": 1, "bad_tag": 1}
    assert host.storage == {}  # all taken, refused ones too (counted, then deleted)
    assert receiver.modem.counters["timeouts"] >= 2  # the garbage and the truncated reply
    assert receiver.modem.counters["garbage"] >= 1  # the junk lines, skipped
    # exactly one ack went out, to the board, and it opens as the ack of seq 3
    assert [destination for destination, _ in host.sent] == [BOARD_NUMBER]
    header, ack = mpseal.unseal(base64.b64decode(host.sent[0][1]), key, direction=mpseal.TO_DEVICE)
    assert header.type == mpseal.TYPE_ACK and mpseal.control.decode_ack(ack)[0] == 3


def test_resent_sms_is_stored_once_and_acked_again(db):
    # What a crash between commit and delete leads to: the same SMS read twice.
    db_path, key = db
    host = SimModem(HOST_NUMBER, Network())
    port = host.start()
    text = _text(_reading(key, 5))
    host.inject(BOARD_NUMBER, text)
    host.inject(BOARD_NUMBER, text)
    receiver = _receiver(db_path, port)
    try:
        wait_until(lambda: len(host.sent) == 2, 30, "two acks")
    finally:
        receiver.stop()
        host.stop()
    assert stored_seqs(db_path) == [5]
    assert stats(db_path)["duplicates"] == 1


def test_sms_stays_on_the_modem_until_the_database_takes_it(db, monkeypatch):
    db_path, key = db
    failures = []

    class FlakyIngest(SmsIngest):
        def ingest(self, messages):
            if not failures:  # the first batch: the database is "locked"
                failures.append(messages)
                return [(Outcome(REJECTED, "sms", STORAGE_ERROR), None) for _ in messages]
            return super().ingest(messages)

    monkeypatch.setattr(modem_receiver, "SmsIngest", FlakyIngest)
    host = SimModem(HOST_NUMBER, Network())
    port = host.start()
    host.inject(BOARD_NUMBER, _text(_reading(key, 9)))
    receiver = _receiver(db_path, port)
    try:
        wait_until(lambda: failures, 30, "the failed batch")
        assert 1 in host.storage or stored_seqs(db_path) == [9]  # not deleted while not stored
        wait_until(lambda: stored_seqs(db_path) == [9], 30, "the retry")
        wait_until(lambda: not host.storage, 30, "the delete")
    finally:
        receiver.stop()
        host.stop()
    assert receiver.counters["sms_kept"] == 1


def test_modem_that_disappears_and_comes_back(db, tmp_path):
    db_path, key = db
    host = SimModem(HOST_NUMBER, Network(), link=str(tmp_path / "ttyMODEM"))
    port = host.start()
    receiver = _receiver(db_path, port)
    try:
        host.inject(BOARD_NUMBER, _text(_reading(key, 1)))
        wait_until(lambda: stored_seqs(db_path) == [1], 30, "the first reading")
        host.unplug()
        wait_until(lambda: receiver.counters["modem_lost"] >= 1, 30, "the receiver to notice")
        host.inject(BOARD_NUMBER, _text(_reading(key, 2)))  # the SIM stores it meanwhile
        # a reconnect attempt against the missing device has failed (not a sleep: load cannot make it race)
        lost = receiver.counters["modem_lost"] + receiver.counters["modem_errors"]
        wait_until(lambda: receiver.counters["modem_lost"] + receiver.counters["modem_errors"] > lost, 30,
                   "a failed reconnect attempt")
        host.replug()
        wait_until(lambda: stored_seqs(db_path) == [1, 2], 60, "the reading stored while unplugged")
    finally:
        receiver.stop()
        host.stop()
    assert receiver.thread is not None and not receiver.thread.is_alive()


# --- mpseal sms-ingest, as gammu-smsd's RunOnReceive runs it ---------------


def _gammu_env(*parts, number=BOARD_NUMBER):
    env = dict(os.environ, SMS_MESSAGES=str(len(parts)))
    for i, text in enumerate(parts, start=1):
        env["SMS_%d_NUMBER" % i] = number
        env["SMS_%d_TEXT" % i] = text
        env["SMS_%d_CLASS" % i] = "-1"
    return env


def test_sms_ingest_exit_status_and_counters(db, tmp_path):
    db_path, key = db
    log = tmp_path / "ingest.log"

    def ingest(env):
        return run_cli("sms-ingest", "--db", str(db_path), "--log", str(log), "IN_file_name.txt", env=env, check=False)

    good = _text(_reading(key, 4))
    assert ingest(_gammu_env(good)).returncode == 0
    assert ingest(_gammu_env(good)).returncode == 0  # gammu ran us twice: a duplicate, still taken
    assert ingest(_gammu_env("not a packet at all")).returncode == 1
    assert ingest(_gammu_env(good[:40], good[40:] + "A" * 120)).returncode == 1  # two parts: oversize
    assert ingest(_gammu_env(_text(_reading(key, 6)), number=STRANGER)).returncode == 1
    assert stored_seqs(db_path) == [4]
    s = stats(db_path)
    assert s["duplicates"] == 1
    assert s["rejected_by_reason"] == {"not_base64": 1, "oversize": 1, "unknown_sender": 1}
    lines = log.read_text().splitlines()
    assert len(lines) == 5 and "stored field seq 4" in lines[0] and "unknown_sender" in lines[4]


def test_sms_ingest_outside_gammu_says_what_to_do(db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_")}
    result = run_cli("sms-ingest", "--db", str(db[0]), env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("mpseal: SMS_MESSAGES is not set")


def test_sms_numbers_binds_and_unbinds(db):
    db_path, _ = db
    out = run_cli("sms-numbers", "field", "--db", str(db_path)).stdout
    assert BOARD_NUMBER in out
    assert run_cli("sms-numbers", "field", "--any", "--db", str(db_path)).stdout.startswith("field accepts SMS from any number")
    bad = run_cli("sms-numbers", "field", "015112345678", "--db", str(db_path), check=False)
    assert bad.returncode == 1 and "international form" in bad.stderr
