"""AT-command client for a GSM modem on a serial port (pyserial): a USB stick,
a SIM800 on a USB-serial adapter, or the simulated modem's pseudo-terminal (tools' sim/modem.py).

TS 27.007/27.005, text mode or PDU mode. PDUs are decoded with smspdudecoder
(SMS-DELIVER) and encoded with gsmmodem.pdu (SMS-SUBMIT): no hand-written
PDU code. Every command waits for its final result code; unsolicited
`+CMTI: "SM",<index>` lines are collected wherever they appear.

Errors: ModemError (the modem answered ERROR / +CME ERROR / +CMS ERROR, or
not in time) and ModemGone (the serial port failed: unplugged, or never there).
"""
import time

import serial
from gsmmodem.pdu import encodeSmsSubmitPdu
from smspdudecoder.easy import read_incoming_sms

DEFAULT_TIMEOUT_S = 5.0
PROMPT_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 60.0  # Ctrl-Z until +CMGS: the network may take this long
INIT_ATTEMPTS = 3
MAX_LINE = 1024
CTRL_Z = b"\x1a"
ESC = b"\x1b"
CMS_INVALID_INDEX = 321
STARTUP_CHATTER = (b"RING", b"Call Ready", b"SMS Ready", b"RDY")


class ModemError(Exception):
    """kind: "error", "cme", "cms" (with code) or "timeout"."""

    def __init__(self, kind, code=None, command=""):
        detail = "" if code is None else " %s" % code
        super().__init__("modem answered %s%s to %s" % (kind, detail, command))
        self.kind = kind
        self.code = code
        self.command = command


class ModemGone(Exception):
    """The serial port failed or vanished."""


class Sms:
    __slots__ = ("index", "sender", "text", "error")

    def __init__(self, index, sender, text, error=None):
        self.index = index
        self.sender = sender
        self.text = text
        self.error = error  # why the message could not be decoded (PDU mode)

    def __repr__(self):
        return "Sms(%r, %r, %r%s)" % (self.index, self.sender, self.text, ", error=%r" % self.error if self.error else "")


def fields(line):
    """'+CMGL: 1,"REC UNREAD","+4915...","","26/01/02,03:04:05+04"' ->
    ['1', 'REC UNREAD', '+4915...', '', '26/01/02,03:04:05+04']."""
    text = line.split(":", 1)[1].strip() if ":" in line else line
    out, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def _printable(line):
    return all(0x20 <= b <= 0x7E for b in line)


class AtModem:
    def __init__(self, port, baud=115200, pdu_mode=False, timeout_s=DEFAULT_TIMEOUT_S, serial_factory=serial.Serial):
        self.port = port
        self.baud = baud
        self.pdu_mode = pdu_mode
        self.timeout_s = timeout_s
        self.serial_factory = serial_factory
        self.serial = None
        self._buf = bytearray()
        self.new_messages = []  # storage indexes announced by +CMTI
        self.counters = {"timeouts": 0, "errors": 0, "garbage": 0}

    # -- port ------------------------------------------------------------
    def open(self):
        try:
            self.serial = self.serial_factory(self.port, self.baud, timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise ModemGone("cannot open %s: %s" % (self.port, exc))
        self._buf.clear()
        self.init()

    def close(self):
        if self.serial is not None:
            try:
                self.serial.close()
            except (serial.SerialException, OSError):
                pass
        self.serial = None

    def _read(self):
        try:
            data = self.serial.read(self.serial.in_waiting or 1)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # pyserial raises SerialException on a vanished device; on a
            # closed pseudo-terminal some versions fail inside select()
            raise ModemGone("%s stopped answering: %s" % (self.port, exc))
        self._buf.extend(data)
        return bool(data)

    def _write(self, data):
        try:
            self.serial.write(data)
        except (serial.SerialException, OSError, AttributeError) as exc:
            raise ModemGone("cannot write to %s: %s" % (self.port, exc))

    def _take_line(self):
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > MAX_LINE:
                    self.counters["garbage"] += 1
                    self._buf.clear()
                return None
            line = bytes(self._buf[:i]).strip()
            del self._buf[: i + 1]
            if not line:
                continue
            if not _printable(line):
                self.counters["garbage"] += 1
                continue
            if line.startswith(b"+CMTI:"):
                try:
                    self.new_messages.append(int(fields(line.decode())[1]))
                except (ValueError, IndexError):
                    self.counters["garbage"] += 1
                continue
            if line in STARTUP_CHATTER:
                continue
            return line.decode("ascii")

    def wait_for_message(self, timeout_s):
        """Reads for up to timeout_s; returns True as soon as a +CMTI came."""
        deadline = time.monotonic() + timeout_s
        while not self.new_messages and time.monotonic() < deadline:
            if not self._read():
                continue
            while self._take_line() is not None:
                pass  # a late reply to a command that timed out
        return bool(self.new_messages)

    def drain(self):
        while self._read():
            pass
        while self._take_line() is not None:
            pass

    # -- commands --------------------------------------------------------
    def _finish(self, command, deadline):
        info = []
        while True:
            line = self._take_line()
            if line is None:
                if time.monotonic() >= deadline:
                    self.counters["timeouts"] += 1
                    raise ModemError("timeout", None, command)
                self._read()
                continue
            if line == "OK":
                return info
            if line == "ERROR":
                self.counters["errors"] += 1
                raise ModemError("error", None, command)
            if line.startswith(("+CME ERROR:", "+CMS ERROR:")):
                self.counters["errors"] += 1
                detail = line[11:].strip()
                raise ModemError(line[1:4].lower(), int(detail) if detail.isdigit() else detail, command)
            if line != command:  # the echo, when echo is on
                info.append(line)

    def command(self, command, timeout_s=None):
        """Sends one command line; returns its information lines (str)."""
        self.drain()
        self._write(command.encode("ascii") + b"\r")
        return self._finish(command, time.monotonic() + (timeout_s or self.timeout_s))

    def init(self):
        for attempt in range(INIT_ATTEMPTS):
            try:
                self.command("AT", 1.0)
                break
            except ModemError:
                if attempt == INIT_ATTEMPTS - 1:
                    raise
        self.command("ATE0")
        self.command("AT+CMEE=1")
        self.command("AT+CMGF=%d" % (0 if self.pdu_mode else 1))
        if not self.pdu_mode:
            self.command('AT+CSCS="GSM"')
        self.command("AT+CNMI=2,1,0,0,0")

    def registered(self):
        for line in self.command("AT+CREG?"):
            if line.startswith("+CREG:"):
                values = fields(line)
                return len(values) > 1 and values[1].strip() in ("1", "5")
        return False

    def signal_dbm(self):
        for line in self.command("AT+CSQ"):
            if line.startswith("+CSQ:"):
                rssi = int(fields(line)[0])
                return None if rssi == 99 else -113 + 2 * rssi
        return None

    # -- SMS -------------------------------------------------------------
    def _pdu_sms(self, index, pdu_hex):
        try:
            sms = read_incoming_sms(pdu_hex)
        except Exception as exc:  # the decoder raises assorted types on junk
            return Sms(index, None, None, "undecodable PDU: %s" % (exc.__class__.__name__))
        return Sms(index, sms["sender"], sms["content"])

    def _parse_listing(self, info, prefix):
        """Pairs of header line + body line into Sms objects."""
        messages = []
        for i, line in enumerate(info):
            if not line.startswith(prefix):
                continue
            values = fields(line)
            body = info[i + 1] if i + 1 < len(info) and not info[i + 1].startswith(prefix) else ""
            if prefix == "+CMGR:":
                index, values = None, [""] + values
            else:
                index = int(values[0])
            if self.pdu_mode:
                messages.append(self._pdu_sms(index, body))
            else:
                messages.append(Sms(index, values[2], body))
        return messages

    def list_messages(self):
        """Every stored SMS: [Sms]."""
        info = self.command("AT+CMGL=4" if self.pdu_mode else 'AT+CMGL="ALL"', 15.0)
        return self._parse_listing(info, "+CMGL:")

    def read_message(self, index):
        """The Sms at `index`, or None for an empty slot."""
        try:
            info = self.command("AT+CMGR=%d" % index)
        except ModemError as exc:
            if exc.kind == "cms" and exc.code == CMS_INVALID_INDEX:
                return None
            raise
        messages = self._parse_listing(info, "+CMGR:")
        if not messages:
            return None
        messages[0].index = index
        return messages[0]

    def delete_message(self, index):
        self.command("AT+CMGD=%d" % index)

    def send_sms(self, number, text):
        """Sends one single-part SMS; returns the message reference."""
        if self.pdu_mode:
            pdus = encodeSmsSubmitPdu(number, text, reference=0, requestStatusReport=False)
            if len(pdus) != 1:
                raise ValueError("text does not fit one SMS (%d characters)" % len(text))
            command = "AT+CMGS=%d" % pdus[0].tpduLength
            body = bytes(pdus[0].data).hex().upper().encode("ascii")
        else:
            command = 'AT+CMGS="%s"' % number
            body = text.encode("ascii")
        self.drain()
        self._write(command.encode("ascii") + b"\r")
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        while not self._buf.lstrip(b"\r\n").startswith(b"> "):
            line = self._take_line()
            if line is not None:
                if line == "ERROR" or line.startswith(("+CMS ERROR:", "+CME ERROR:")):
                    self._buf[:0] = line.encode() + b"\r\n"
                    return self._finish(command, deadline)
                continue
            if time.monotonic() >= deadline:
                self.counters["timeouts"] += 1
                self._write(ESC)
                raise ModemError("timeout", "no prompt", command)
            self._read()
        self._buf.clear()
        self._write(body + CTRL_Z)
        for line in self._finish(command, time.monotonic() + SEND_TIMEOUT_S):
            if line.startswith("+CMGS:"):
                return int(fields(line)[0])
        return None

