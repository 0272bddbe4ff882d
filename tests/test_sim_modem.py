"""The simulated modems against a third-party client: python-gsmmodem-new
(gsmmodem.modem.GsmModem, unmodified) drives them as it drives a SIM800 --
connect, identification, signal, registration, send text and PDU, +CMTI,
read/list/delete, multipart, delivery reports. The modems are simulated
(a GSM radio cannot exist here); the client is the real library.
Character sets and time zones are checked on the raw AT wire."""
import datetime
import threading

import pytest
import serial
from gsmmodem.modem import GsmModem, StatusReport
from gsmmodem.pdu import Concatenation, decodeSmsPdu

from conftest import wait_until
from mpseal_tools.sim.gsm_network import Network, StoredSms, deliver_pdu, scts_text
from mpseal_tools.sim.modem import SimModem

A, B = "+4915100000001", "+4915100000002"
MINUS_5 = datetime.timezone(datetime.timedelta(hours=-5))  # gsmmodem's text-mode parser keeps whole hours only


@pytest.fixture
def network():
    return Network(timezone=MINUS_5)


@pytest.fixture
def modems(network):
    pair = [SimModem(A, network), SimModem(B, network)]
    paths = [m.start() for m in pair]
    yield pair, paths
    for m in pair:
        m.stop()


class Client:
    """A GsmModem with its callbacks' results collected."""

    def __init__(self, path, text_mode=False):
        self.received, self.reports = [], []
        self.modem = GsmModem(path, 115200, smsReceivedCallbackFunc=self.received.append,
                              smsStatusReportCallback=self.reports.append)
        self.modem.smsTextMode = text_mode
        self.modem.connect()

    def close(self):
        self.modem.close()


@pytest.fixture
def clients(modems):
    _, paths = modems
    made = []

    def make(index, text_mode=False):
        client = Client(paths[index], text_mode)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_connect_identification_signal_and_registration(modems, clients):
    (sim_a, _), _ = modems
    client = clients(0)
    modem = client.modem
    assert modem.manufacturer == "SIMCOM_Ltd"
    assert modem.model.startswith("SIMCOM_SIM800")
    imei = modem.imei
    assert len(imei) == 15 and imei.isdigit()
    assert modem.networkName == "mpseal sim"
    assert modem.signalStrength == sim_a.signal
    assert modem.waitForNetworkCoverage(5) == sim_a.signal
    assert modem.smsc == "+4915100009999"
    assert modem.ownNumber == A
    assert modem.smsSupportedEncoding == ["IRA", "GSM", "UCS2", "8859-1"]  # AT+CSCS=?
    assert "+CNUM" in modem.supportedCommands  # found by probing AT+X=? (a SIM800 has no AT+CLAC)
    # connect() asked for ds=2 (+CDSI), was refused, and fell back to ds=1 (+CDS)
    assert "AT+CNMI=2,1,0,1,0" in sim_a.commands


@pytest.mark.parametrize("text_mode", [False, True], ids=["pdu", "text"])
def test_send_and_receive_through_cmti(modems, clients, network, text_mode):
    sender = clients(0, text_mode)
    receiver = clients(1, text_mode)
    sender.modem.sendSms(B, "hello from A")
    wait_until(lambda: receiver.received, 20, "+CMTI handled by the client")
    sms = receiver.received[0]
    assert (sms.number, sms.text) == (A, "hello from A")
    assert sms.time.utcoffset() == datetime.timedelta(hours=-5)  # a negative zone stays negative
    (_, sim_b), _ = modems
    wait_until(lambda: not sim_b.storage, 10, "the client deleting the read SMS")


def test_read_list_and_delete(modems, clients):
    (_, sim_b), _ = modems
    for i in range(3):
        sim_b.inject(A, "stored %d" % i)
    client = clients(1)
    listed = client.modem.listStoredSms()
    assert [s.text for s in listed] == ["stored 0", "stored 1", "stored 2"]
    assert client.modem.readStoredSms(2).text == "stored 1"
    client.modem.deleteStoredSms(2)
    assert sorted(sim_b.storage) == [1, 3]
    client.modem.deleteMultipleStoredSms()
    assert sim_b.storage == {}


def test_multipart_keeps_its_concatenation_header(modems, clients):
    (_, sim_b), _ = modems
    text = "".join("part-%03d " % i for i in range(30))  # 270 characters: two SMS
    clients(0).modem.sendSms(B, text)
    wait_until(lambda: len(sim_b.storage) == 2, 10, "both parts stored")
    parts = clients(1).modem.listStoredSms()
    headers = [next(u for u in s.udh if isinstance(u, Concatenation)) for s in parts]
    assert [(h.parts, h.number) for h in headers] == [(2, 1), (2, 2)]
    assert headers[0].reference == headers[1].reference
    assert "".join(s.text for s in parts) == text


def test_ucs2_message_is_readable(modems, clients):
    (_, sim_b), _ = modems
    clients(0).modem.sendSms(B, "Grüße, 你好")
    wait_until(lambda: sim_b.storage, 10, "UCS2 SMS stored")
    assert clients(1).modem.readStoredSms(1).text == "Grüße, 你好"


def test_delivery_report_through_cds(modems, clients):
    sender = clients(0)
    clients(1)
    sent = sender.modem.sendSms(B, "please confirm")
    wait_until(lambda: sender.reports, 20, "a +CDS status report")
    report = sender.reports[0]
    assert isinstance(report, StatusReport)
    assert report.reference == sent.reference
    assert report.deliveryStatus == StatusReport.DELIVERED
    assert report.number == B


def test_urcs_never_land_inside_a_reply(modems):
    """A URC that becomes due while a reply is written waits until after it."""
    (_, sim_b), paths = modems
    sim_b.cnmi_mt = 1
    sim_b.delay_s = 0.3  # a slow reply: the SMS arrives while it is being made
    with serial.Serial(paths[1], 115200, timeout=10) as tty:
        tty.write(b"ATE0\r")
        assert tty.read_until(b"OK\r\n").endswith(b"OK\r\n")
        tty.write(b"AT+CSQ\r")
        wait_until(lambda: sim_b.commands[-1:] == ["AT+CSQ"], 10, "the modem taking the command")
        sim_b.inject(A, "arrives mid-reply")
        answer = tty.read_until(b'+CMTI: "SM",1\r\n')
    assert answer.endswith(b'OK\r\n\r\n+CMTI: "SM",1\r\n'), answer
    assert answer.index(b"+CSQ:") < answer.index(b"OK") < answer.index(b"+CMTI")


def at(tty, command):
    tty.write(command + b"\r")
    reply = tty.read_until(b"OK\r\n")
    assert reply.endswith(b"OK\r\n"), (command, reply)
    return reply


@pytest.mark.parametrize("charset, body", [
    (b"GSM", b"\x01 10"),  # GSM-7 default alphabet: the pound sign is 0x01
    (b"8859-1", b"\xa3 10"),
    (b"IRA", b"? 10"),  # 7-bit IRA has no pound sign
    (b"UCS2", b"00A3002000310030"),
])
def test_text_mode_body_follows_the_character_set(modems, charset, body):
    (_, sim_b), paths = modems
    sim_b.inject(A, "£ 10")
    with serial.Serial(paths[1], 115200, timeout=10) as tty:
        at(tty, b"ATE0")
        at(tty, b"AT+CMGF=1")
        at(tty, b'AT+CSCS="' + charset + b'"')
        lines = at(tty, b"AT+CMGR=1").split(b"\r\n")
    assert lines[2] == body, lines


def test_text_mode_send_decodes_the_character_set(modems, network):
    (sim_a, _), paths = modems
    with serial.Serial(paths[0], 115200, timeout=10) as tty:
        at(tty, b"ATE0")
        at(tty, b"AT+CMGF=1")
        at(tty, b'AT+CSCS="GSM"')
        tty.write(b'AT+CMGS="' + B.encode() + b'"\r')
        assert tty.read_until(b"> ").endswith(b"> ")
        tty.write(b"\x01 10\x1a")
        assert at(tty, b"").count(b"+CMGS:") == 1
    assert network.delivered[-1] == (A, B, "£ 10")


def test_ucs2_in_text_mode_is_shown_as_hex(modems, clients):
    (_, sim_b), paths = modems
    clients(0).modem.sendSms(B, "你好")
    wait_until(lambda: sim_b.storage, 10, "UCS2 SMS stored")
    with serial.Serial(paths[1], 115200, timeout=10) as tty:
        at(tty, b"ATE0")
        at(tty, b"AT+CMGF=1")
        lines = at(tty, b"AT+CMGR=1").split(b"\r\n")
    assert lines[2] == b"4F60597D"


def test_test_form_commands_answer_as_a_sim800(modems):
    _, paths = modems
    with serial.Serial(paths[0], 115200, timeout=10) as tty:
        at(tty, b"ATE0")
        assert b'+CPMS: ("SM","ME","MT")' in at(tty, b"AT+CPMS=?")
        assert b'+CSCS: ("IRA","GSM","UCS2","8859-1")' in at(tty, b"AT+CSCS=?")
        assert at(tty, b"AT+CNUM=?") == b"\r\nOK\r\n"
        assert b"+COPS: 0,0," in at(tty, b"AT+COPS?")
        assert b"+CFUN: 1" in at(tty, b"AT+CFUN?")
        tty.write(b"AT+WIND?\r")  # another maker's command
        assert tty.read_until(b"ERROR\r\n").endswith(b"\r\nERROR\r\n")


def test_half_hour_negative_time_zone_in_pdu_and_text():
    when = datetime.datetime(2026, 12, 1, 8, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30)))
    hex_pdu, _ = deliver_pdu(StoredSms(1, 0, A, "hi", when))
    decoded = decodeSmsPdu(hex_pdu)["time"]
    assert decoded.utcoffset() == datetime.timedelta(hours=-3, minutes=-30)
    assert decoded == when
    assert scts_text(when) == "26/12/01,08:30:00-14"  # quarter hours, signed
