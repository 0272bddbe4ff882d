"""The GSM network the simulated modems join: numbers to endpoints, a service
centre that holds SMS for a full receiver, and the SMS PDUs (3GPP TS 23.040)
the modems speak.

A message keeps what the SMS-SUBMIT carried that matters at the far end: the
alphabet (GSM-7 or UCS2), the user data header (the concatenation header of
a multipart SMS), and the status-report request, answered by an
SMS-STATUS-REPORT to the sender once the message is delivered.

PDUs are built here from gsmmodem.pdu's septet/number/UCS2 encoders and
SMS-SUBMITs decoded with smspdudecoder, so a client's PDU code is checked
against a second, independent implementation.

Does NOT model: radio conditions, SMSC routing or delays, charging, roaming,
validity periods (nothing expires), failed or temporary-failure status
reports (a report always says "delivered", and is sent only on delivery),
8-bit data messages, message classes other than "store in SIM", and the
national language shift tables.
"""
import datetime
import threading
from io import StringIO

from gsmmodem import pdu as gsm_pdu
from smspdudecoder.fields import SMSSubmit

GSM7, UCS2 = "gsm", "ucs2"
STATUS_DELIVERED = 0x00  # TP-ST: "short message received by the SME"


class Message:
    """One SMS in the network."""

    def __init__(self, sender, destination, text, alphabet=GSM7, udh=b"", status_report=False, reference=0):
        self.sender, self.destination, self.text = sender, destination, text
        self.alphabet = alphabet
        self.udh = bytes(udh)  # information elements, without the UDHL octet
        self.status_report = status_report
        self.reference = reference  # TP-MR given by the sending modem
        self.submitted = now()


class StoredSms:
    """A message in a modem's storage: an SMS-DELIVER, or (report set) an
    SMS-STATUS-REPORT about a message this modem sent."""

    def __init__(self, index, status, number, text, when, alphabet=GSM7, udh=b"", report=None):
        self.index = index
        self.status = status  # index into STATUS_TEXT
        self.number = number
        self.text = text
        self.when = when  # aware datetime (service centre time stamp)
        self.alphabet = alphabet
        self.udh = udh
        self.report = report  # (reference, submitted, delivered) for a status report


def now(timezone=None):
    return datetime.datetime.now(timezone or datetime.timezone.utc).replace(microsecond=0)


def scts_text(when):
    # text-mode time stamp "yy/MM/dd,hh:mm:ss+zz" (zz in quarter hours, signed)
    quarters = int(when.utcoffset().total_seconds() // 900)
    return when.strftime("%y/%m/%d,%H:%M:%S") + ("%+03d" % quarters)


def scts_octets(when):
    """TP-SCTS: 7 semi-octets, nibbles swapped; the time zone in quarter
    hours with its sign in bit 3 of the last octet (TS 23.040 9.2.3.11)."""
    digits = when.strftime("%y%m%d%H%M%S")
    octets = bytearray(int(digits[i + 1] + digits[i], 16) for i in range(0, 12, 2))
    quarters = int(when.utcoffset().total_seconds() // 900)
    tz = "%02d" % abs(quarters)
    octets.append(int(tz[1] + tz[0], 16) | (0x08 if quarters < 0 else 0))
    return bytes(octets)


def _address(number):
    digits = number.lstrip("+")
    toa = 0x91 if number.startswith("+") else 0x81
    return bytes((len(digits), toa)) + bytes(gsm_pdu.encodeSemiOctets(digits))


def user_data(text, alphabet, udh=b""):
    """(UDL, UD octets) for GSM-7 or UCS2 text behind an optional header."""
    header = bytes((len(udh),)) + udh if udh else b""
    if alphabet == UCS2:
        body = text.encode("utf-16-be")
        return len(header) + len(body), header + body
    septets = gsm_pdu.encodeGsm7(text)
    if not header:
        return len(septets), bytes(gsm_pdu.packSeptets(septets))
    fill = (7 - (len(header) * 8) % 7) % 7  # the text starts on a septet boundary
    header_septets = (len(header) * 8 + fill) // 7
    # packSeptets' padBits p starts the first septet at bit 7 - p, i.e. p = 7 - fill
    packed = gsm_pdu.packSeptets(septets, padBits=(len(header) * 8) % 7)
    return header_septets + len(septets), header + bytes(packed)


def deliver_pdu(sms):
    """SMS-DELIVER TPDU (hex, with an empty SMSC prefix) of a stored SMS.
    Returns (hex, tpdu length) as AT+CMGR/AT+CMGL report them."""
    first = 0x04 | (0x40 if sms.udh else 0)  # MTI deliver, no more messages; UDHI
    tpdu = bytearray((first,)) + _address(sms.number)
    tpdu += bytes((0x00, 0x08 if sms.alphabet == UCS2 else 0x00))  # PID, DCS
    tpdu += scts_octets(sms.when)
    length, data = user_data(sms.text, sms.alphabet, sms.udh)
    tpdu += bytes((length,)) + data
    return "00" + bytes(tpdu).hex().upper(), len(tpdu)


def status_report_pdu(sms):
    """SMS-STATUS-REPORT TPDU (hex, empty SMSC prefix) and its length."""
    reference, submitted, delivered = sms.report
    tpdu = bytearray((0x06, reference)) + _address(sms.number)  # MTI status report, no more messages
    tpdu += scts_octets(submitted) + scts_octets(delivered) + bytes((STATUS_DELIVERED,))
    return "00" + bytes(tpdu).hex().upper(), len(tpdu)


def _udh_bytes(header):
    out = bytearray()
    for element in header["elements"] if header else ():
        data = element["data"]
        if isinstance(data, dict):  # a concatenation header, already taken apart by the decoder
            width = 2 if element["iei"] == 0x08 else 1
            data = (data["reference"].to_bytes(width, "big") + bytes((data["parts_count"], data["part_number"]))).hex()
        out += bytes((element["iei"], element["length"])) + bytes.fromhex(data)
    return bytes(out)


def decode_submit(hex_pdu):
    """A Message (no sender yet) from an SMS-SUBMIT PDU as AT+CMGS=<len> receives it."""
    sms = SMSSubmit.decode(StringIO(hex_pdu))
    number = sms["recipient"]["number"]
    if sms["recipient"]["toa"]["ton"] == "international":
        number = "+" + number
    encoding = sms["dcs"]["encoding"]
    if encoding == "binary":
        raise ValueError("8-bit data messages are not modelled")
    return Message(None, number, sms["user_data"]["data"], alphabet=UCS2 if encoding == "ucs2" else GSM7,
                   udh=_udh_bytes(sms["user_data"]["header"]), status_report=sms["header"]["srr"],
                   reference=sms["message-ref"])


def submit_pdu_text(hex_pdu):
    """(recipient, text) of an SMS-SUBMIT PDU."""
    message = decode_submit(hex_pdu)
    return message.destination, message.text


class Network:
    """Numbers to endpoints. An SMS to a full storage waits at the 'service
    centre' and is retried when the receiver frees space, as real SCs do.
    Endpoints have receive_sms(message) -> bool (False: storage full) and
    may have status_report(message, delivered_at)."""

    def __init__(self, timezone=None):
        self.timezone = timezone  # of the service centre's time stamps (UTC when None)
        self.endpoints = {}
        self.pending = []  # Messages waiting for space
        self.undeliverable = []
        self.delivered = []  # (sender, destination, text), for test assertions
        self.lock = threading.RLock()

    def attach(self, number, endpoint):
        with self.lock:
            self.endpoints[number] = endpoint

    def submit(self, sender, destination, text, message=None):
        message = message or Message(sender, destination, text)
        message.sender = sender
        message.submitted = now(self.timezone)
        with self.lock:
            self.pending.append(message)
            self.flush()

    def flush(self):
        with self.lock:
            waiting, self.pending = self.pending, []
            for message in waiting:
                endpoint = self.endpoints.get(message.destination)
                if endpoint is None:
                    self.undeliverable.append((message.sender, message.destination, message.text))
                elif endpoint.receive_sms(message):
                    self.delivered.append((message.sender, message.destination, message.text))
                    origin = self.endpoints.get(message.sender)
                    if message.status_report and hasattr(origin, "status_report"):
                        origin.status_report(message, now(self.timezone))
                else:
                    self.pending.append(message)
