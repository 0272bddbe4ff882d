"""The real firmware (MicroPython unix port) sends its readings by SMS through
a simulated modem; they reach (a) `mpseal receive --modem` on a second
simulated modem, (b) the real gammu-smsd with its dummy phone and
RunOnReceive = `mpseal sms-ingest`. Readings are stored once, acks come back
by SMS, and a command riding on an ack is obeyed by the board.
The modems are simulated (a GSM radio cannot exist here)."""
import os
import shutil
import subprocess

import pytest

from mpseal_tools.sim.gammu_bridge import GammuPhone
from mpseal_tools.sim.gsm_network import Network
from mpseal_tools.sim.modem import SimModem
from conftest import wait_until
from sms_helpers import (
    BOARD_NUMBER,
    HOST_NUMBER,
    MPSEAL,
    board_config,
    board_config_on_flash,
    make_device,
    run_cli,
    start_board,
    stats,
    stored_seqs,
)

READINGS = 3
pytestmark = pytest.mark.slow


def _start_receiver(tmp_path, db, modem_path):
    log = open(tmp_path / "receiver.log", "w")
    process = subprocess.Popen(
        [MPSEAL, "receive", "--db", str(db), "--udp", "off", "--http", "off", "--api", "off", "--modem", modem_path],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    log.close()
    wait_until(lambda: "ready" in (tmp_path / "receiver.log").read_text() or process.poll() is not None, 30, "the receiver's modem")
    assert process.poll() is None, (tmp_path / "receiver.log").read_text()
    return process


def _stop(process):
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_board_to_mpseal_receive_modem(tmp_path, monkeypatch):
    key = os.urandom(32)
    db = tmp_path / "mpseal.sqlite"
    make_device(db, key)
    run_cli("command", "field", "set-interval", "2", "--db", str(db))
    network = Network()
    board_modem = SimModem(BOARD_NUMBER, network)
    host_modem = SimModem(HOST_NUMBER, network)
    board_path, host_path = board_modem.start(), host_modem.start()
    receiver = _start_receiver(tmp_path, db, host_path)
    try:
        board = start_board(tmp_path, board_config(key, HOST_NUMBER, READINGS), board_path, monkeypatch)
        board.wait(120)
    finally:
        _stop(receiver)
        board_modem.stop()
        host_modem.stop()
    log = (tmp_path / "receiver.log").read_text()
    assert stored_seqs(db) == [1, 2, 3], log
    assert board.stats["acked"] == READINGS, "\n".join(board.lines[-20:])
    assert board.stats["commands"] == 1
    assert board_config_on_flash(tmp_path)["interval_s"] == 2  # the command was obeyed
    # every SMS went through the network: 3 readings up, 3 acks down
    texts = [(s, d) for s, d, _ in network.delivered]
    assert texts.count((BOARD_NUMBER, HOST_NUMBER)) == READINGS
    assert texts.count((HOST_NUMBER, BOARD_NUMBER)) == READINGS
    assert host_modem.storage == {}, "an SMS was left on the host modem after its reading was committed"
    assert all(len(text) <= 160 for _, _, text in network.delivered)


GAMMU_NUMBER = "+4915100000003"


def _smsd_config(tmp_path, db):
    phone = tmp_path / "phone"
    spool = tmp_path / "spool"
    for sub in ("inbox", "outbox", "sent", "error"):
        (spool / sub).mkdir(parents=True)
    config = tmp_path / "smsdrc"
    config.write_text(
        "[gammu]\ndevice = %s/\nconnection = none\nmodel = dummy\n\n"
        "[smsd]\nservice = files\ninboxpath = %s/inbox/\noutboxpath = %s/outbox/\n"
        "sentsmspath = %s/sent/\nerrorsmspath = %s/error/\n"
        "RunOnReceive = %s sms-ingest --db %s --log %s --reply-config %s\n"
        "ReceiveFrequency = 1\nStatusFrequency = 0\nCommTimeout = 1\nLoopSleep = 1\n"
        "CheckSecurity = 0\nCheckBattery = 0\nCheckSignal = 0\nHangupCalls = 0\n"
        "logfile = %s\ndebuglevel = 1\n"
        % (phone, spool, spool, spool, spool, MPSEAL, db, tmp_path / "ingest.log", tmp_path / "smsdrc", tmp_path / "smsd.log")
    )
    return config, phone, spool


@pytest.mark.skipif(not shutil.which("gammu-smsd"), reason="gammu-smsd not installed (make system-deps installs it)")
def test_board_to_gammu_smsd(tmp_path, monkeypatch):
    key = os.urandom(32)
    db = tmp_path / "mpseal.sqlite"
    make_device(db, key)
    run_cli("command", "field", "set-interval", "3", "--db", str(db))
    config, phone, spool = _smsd_config(tmp_path, db)
    network = Network()
    board_modem = SimModem(BOARD_NUMBER, network)
    gammu_phone = GammuPhone(GAMMU_NUMBER, str(phone), network, sent_folder=str(spool / "sent"))
    board_path = board_modem.start()
    gammu_phone.start()
    smsd = subprocess.Popen(["gammu-smsd", "-c", str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        board = start_board(tmp_path, board_config(key, GAMMU_NUMBER, READINGS, ack_timeout_s=30), board_path, monkeypatch)
        board.wait(180)
    finally:
        _stop(smsd)
        gammu_phone.stop()
        board_modem.stop()
    ingest_log = (tmp_path / "ingest.log").read_text() if (tmp_path / "ingest.log").exists() else ""
    assert stored_seqs(db) == [1, 2, 3], ingest_log + (tmp_path / "smsd.log").read_text()[-3000:]
    assert board.stats["acked"] == READINGS, "\n".join(board.lines[-20:])
    assert board.stats["commands"] == 1
    assert board_config_on_flash(tmp_path)["interval_s"] == 3
    assert stats(db)["stored"] == READINGS
    assert ingest_log.count("stored field") == READINGS
