"""The GSM network the simulated modems join: numbers to endpoints, a service
centre that holds SMS for a full receiver, and the SMS PDUs the modems speak.

Does NOT model: radio conditions, SMSC routing or delays, charging, roaming,
status reports from the network (each submission is delivered or held), or
message classes other than "store in SIM".
"""
import threading
from io import StringIO

from gsmmodem import pdu as gsm_pdu
from smspdudecoder.fields import SMSSubmit


class StoredSms:
    def __init__(self, index, status, number, text, when):
        self.index = index
        self.status = status  # index into STATUS_TEXT
        self.number = number
        self.text = text
        self.when = when  # aware datetime (service centre time stamp)


def scts_text(when):
    # text-mode time stamp "yy/MM/dd,hh:mm:ss+zz" (zz in quarter hours)
    quarters = int(when.utcoffset().total_seconds() // 900)
    return when.strftime("%y/%m/%d,%H:%M:%S") + ("%+03d" % quarters)


def deliver_pdu(sender, text, when):
    """SMS-DELIVER TPDU (hex, with an empty SMSC prefix) for a GSM-7 text.
    Returns (hex, tpdu length) as AT+CMGR/AT+CMGL report them."""
    digits = sender.lstrip("+")
    address_type = 0x91 if sender.startswith("+") else 0x81
    septets = gsm_pdu.encodeGsm7(text)
    tpdu = bytearray((0x04, len(digits), address_type))  # MTI deliver, more-messages-to-send = no
    tpdu += gsm_pdu.encodeSemiOctets(digits)
    tpdu += bytes((0x00, 0x00))  # PID, DCS (GSM-7)
    scts = when.strftime("%y%m%d%H%M%S") + "%02d" % (abs(int(when.utcoffset().total_seconds() // 900)))
    tpdu += bytes(int(scts[i + 1] + scts[i], 16) for i in range(0, 14, 2))  # swapped nibbles
    tpdu.append(len(septets))
    tpdu += gsm_pdu.packSeptets(septets)
    return "00" + bytes(tpdu).hex().upper(), len(tpdu)


def submit_pdu_text(hex_pdu):
    """(recipient, text) of an SMS-SUBMIT PDU as AT+CMGS=<len> receives it."""
    sms = SMSSubmit.decode(StringIO(hex_pdu))
    number = sms["recipient"]["number"]
    if sms["recipient"]["toa"]["ton"] == "international":
        number = "+" + number
    return number, sms["user_data"]["data"]


class Network:
    """Numbers to endpoints. An SMS to a full storage waits at the 'service
    centre' and is retried when the receiver frees space, as real SCs do."""

    def __init__(self):
        self.endpoints = {}
        self.pending = []  # (sender, destination, text)
        self.undeliverable = []
        self.delivered = []  # (sender, destination, text), for test assertions
        self.lock = threading.RLock()

    def attach(self, number, endpoint):
        with self.lock:
            self.endpoints[number] = endpoint

    def submit(self, sender, destination, text):
        with self.lock:
            self.pending.append((sender, destination, text))
            self.flush()

    def flush(self):
        with self.lock:
            waiting, self.pending = self.pending, []
            for sender, destination, text in waiting:
                endpoint = self.endpoints.get(destination)
                if endpoint is None:
                    self.undeliverable.append((sender, destination, text))
                elif endpoint.receive_sms(sender, text):
                    self.delivered.append((sender, destination, text))
                else:
                    self.pending.append((sender, destination, text))
