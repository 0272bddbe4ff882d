"""A simulated GSM modem on a pseudo-terminal, for tests and demos.

Speaks the SIM800 dialect of 3GPP TS 27.007 (general, network) and TS 27.005
(SMS) well enough for the board's firmware/modem.py, the host's
mpseal_host/modem.py and the third-party python-gsmmodem-new, unmodified:

  modem = SimModem("+4915100000001", network)
  path = modem.start()            # e.g. /dev/pts/7 (or the stable `link`)

Several modems joined to one Network text each other by number: an SMS sent
with AT+CMGS lands in the receiver's storage and, with AT+CNMI <mt>=1 set,
raises `+CMTI: "SM",<index>`. Unsolicited result codes are queued and written
only BETWEEN responses (never inside a reply or a `> ` prompt, and not while
a command is still arriving), as a modem holds URCs while its link is busy.
A message keeps its alphabet (GSM-7 or UCS2) and user data header, so a
multipart SMS arrives with its concatenation header; with <ds>=1 a sender
whose SMS-SUBMIT asked for a status report gets `+CDS` when it is delivered.
The supported commands and the deviations from a SIM800 are listed in
docs/sms.md ("Simulated modem").

Faults are data on the modem: `registered`, `delay_s`, and fail_next(kind):
  "send_cms"  after the text + Ctrl-Z: `+CMS ERROR: 500` (network refused)
  "send_error" the `> ` prompt is answered by ERROR (modem busy)
  "garbage"   the next reply is replaced by binary junk (no final result)
  "truncate"  the next reply is cut in half (no final result)
  "noise"     the next reply is preceded by a line of junk
  "silent"    the next command gets no reply at all
and unplug()/replug() make the device disappear and come back (the stable
`link` path is re-pointed at the new pseudo-terminal).

Does NOT model: voice calls, USSD, GPRS/TCP (AT+CIP*), phone books, PIN
entry (the SIM is always READY), baud rates and flow control (a pty has
none), power-on delays (ready at once), the SIM800's `Call Ready`/`SMS Ready`
start-up URCs, several storages (SM, ME and MT name one storage), status
reports stored in memory (<ds>=2, `+CDSI`), cell broadcast, and 8-bit data
messages.

Run standalone: python -m mpseal_tools.sim.modem --modem +49151... [--modem ...]
prints one `<number> <path>` line per modem and serves until interrupted.
"""
import argparse
import binascii
import os
import select
import sys
import threading
import time
import tty

from gsmmodem import pdu as gsm_pdu

from mpseal_tools.sim.gammu_bridge import GammuPhone
from mpseal_tools.sim.gsm_network import (GSM7, UCS2, Message, Network, StoredSms, decode_submit, deliver_pdu, now,
                                          scts_text, status_report_pdu)

CTRL_Z = b"\x1a"
ESC = b"\x1b"
STATUS_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
STATUS_BY_TEXT = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}
TEXT_MODE_MAX = {GSM7: 160, UCS2: 70}  # characters (GSM-7 septets) in one SMS
CHARSETS = ("GSM", "IRA", "8859-1", "UCS2")
MEMORIES = ("SM", "ME", "MT")
MANUFACTURER = b"SIMCOM_Ltd"
MODEL = b"SIMCOM_SIM800L"
REVISION = b"Revision:1418B05SIM800L24 (mpseal simulated modem)"
OPERATOR = b"mpseal sim"
SMSC = "+4915100009999"

# +CMS ERROR codes (TS 27.005 3.2.5) and +CME ERROR codes (TS 27.007 9.2)
CMS_ME_FAILURE = 300
CMS_NOT_ALLOWED = 302
CMS_NOT_SUPPORTED = 303
CMS_INVALID_PDU = 304
CMS_INVALID_TEXT = 305
CMS_INVALID_INDEX = 321
CMS_MEMORY_FULL = 322
CMS_NO_NETWORK = 331
CMS_UNKNOWN = 500
CME_NOT_ALLOWED = 3
CME_NOT_SUPPORTED = 4
CME_NO_NETWORK = 30
CME_BAD_PARAMETERS = 50
ERROR_TEXT = {
    ("CMS", CMS_ME_FAILURE): "ME failure",
    ("CMS", CMS_NOT_ALLOWED): "operation not allowed",
    ("CMS", CMS_NOT_SUPPORTED): "operation not supported",
    ("CMS", CMS_INVALID_PDU): "invalid PDU mode parameter",
    ("CMS", CMS_INVALID_TEXT): "invalid text mode parameter",
    ("CMS", CMS_INVALID_INDEX): "invalid memory index",
    ("CMS", CMS_MEMORY_FULL): "memory full",
    ("CMS", CMS_NO_NETWORK): "no network service",
    ("CMS", CMS_UNKNOWN): "unknown error",
    ("CME", CME_NOT_ALLOWED): "operation not allowed",
    ("CME", CME_NOT_SUPPORTED): "operation not supported",
    ("CME", CME_NO_NETWORK): "no network service",
    ("CME", CME_BAD_PARAMETERS): "incorrect parameters",
}
FAULT_KINDS = ("send_cms", "send_error", "garbage", "truncate", "noise", "silent")
GARBAGE = b"\xff\xfe\x00+CM\x13\x80\xc3(junk\xf0"
# Test commands (AT+X=?) and their answers, as a SIM800 gives them.
TEST_FORMS = {
    "+CMGF": b"+CMGF: (0,1)",
    "+CSCS": b'+CSCS: ("IRA","GSM","UCS2","8859-1")',
    "+CPMS": b'+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")',
    "+CNMI": b"+CNMI: (0-3),(0-3),(0,2),(0,1),(0,1)",
    "+CMGL": b'+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")',
    "+CMGD": b"+CMGD: (1-10),(0-4)",
    "+CREG": b"+CREG: (0-2)",
    "+CSQ": b"+CSQ: (0-31,99),(0-7,99)",
    "+CFUN": b"+CFUN: (0,1,4),(0,1)",
    "+CMEE": b"+CMEE: (0-2)",
    "+CSMP": b"+CSMP: (0-255),(0-255),(0-255),(0-255)",
    "+CSDH": b"+CSDH: (0,1)",
    "+COPS": b'+COPS: (2,"mpseal sim","mpseal","26299"),,(0-4),(0-2)',
    "+CSCA": b"",
    "+CNUM": b"",
    "+CMGR": b"",
    "+CMGS": b"",
    "+CLIP": b"+CLIP: (0,1)",
    "+CRC": b"+CRC: (0,1)",
    "+CVHU": b"+CVHU: (0,1)",
    "+VTS": b'+VTS: (0-9,*,#,A,B,C,D)',
}
# Accepted and remembered nowhere: settings that change nothing in the simulation.
NO_EFFECT = ("+CLIP=", "+CRC=", "+CVHU=", "+DDET=", "+COPS=", "+CSDH=")


class CommandError(Exception):
    def __init__(self, family, code):
        Exception.__init__(self, "%s %d" % (family, code))
        self.family = family
        self.code = code


def to_te(text, charset):
    """A string in the TE character set of AT+CSCS (27.007 5.5), as bytes."""
    if charset == "UCS2":
        return text.encode("utf-16-be").hex().upper().encode()
    if charset == "GSM":
        return bytes(gsm_pdu.encodeGsm7(text, discardInvalid=True))  # one byte per septet
    if charset == "8859-1":
        return text.encode("latin-1", "replace")
    return text.encode("ascii", "replace")  # IRA: 7-bit; anything else becomes "?"


def from_te(data, charset):
    """The inverse of to_te; ValueError on bytes the character set lacks."""
    if charset == "UCS2":
        return binascii.unhexlify(data).decode("utf-16-be")
    if charset == "GSM":
        return gsm_pdu.decodeGsm7(bytearray(data))
    if charset == "8859-1":
        return data.decode("latin-1")
    return data.decode("ascii")


def _quoted(argument):
    return argument.strip().strip('"')


class SimModem:
    def __init__(self, number, network=None, storage_size=10, link=None, delay_s=0.0, signal=20):
        self.number = number
        self.network = network
        self.storage_size = storage_size
        self.link = link
        self.delay_s = delay_s
        self.signal = signal  # AT+CSQ rssi 0..31, 99 unknown
        self.registered = True
        self.storage = {}  # index -> StoredSms
        self.sent = []  # (destination, text) accepted by AT+CMGS
        self.commands = []  # every command line received, for test assertions
        self.faults = []
        self.lock = threading.RLock()
        self.urcs = []  # unsolicited result codes waiting for the link to be idle
        self.message_reference = 0
        self.smsc = SMSC
        self._reset_settings()
        self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._running = False
        if network is not None:
            network.attach(number, self)

    def _reset_settings(self):
        self.echo = True
        self.text_mode = False  # power-on default of TS 27.005 is PDU mode
        self.charset = "IRA"
        self.cmee = 0
        self.cnmi_mt = 0
        self.cnmi_ds = 0
        self.creg_n = 0
        self.cfun = 1
        self.csmp = [17, 167, 0, 0]  # fo (SUBMIT, relative VP), vp, pid, dcs
        self.memories = ["SM", "SM", "SM"]

    # -- life cycle -------------------------------------------------------
    def start(self):
        """Opens the pseudo-terminal and serves it; returns the path to open."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes as on a UART
        self._wake_r, self._wake_w = os.pipe()
        path = os.ttyname(self._slave)
        if self.link:
            tmp = self.link + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(path, tmp)
            os.replace(tmp, self.link)
            path = self.link
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="modem-sim-" + self.number, daemon=True)
        self._thread.start()
        return path

    def stop(self):
        self._running = False
        self._wake()
        if self._thread:
            self._thread.join(2)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._wake_r = self._wake_w = None

    def unplug(self):
        """The USB stick is pulled: the open port dies (reads fail)."""
        self.stop()
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)

    def replug(self):
        """Plugged back in: a new device node, settings back to power-on."""
        self._reset_settings()
        with self.lock:
            self.urcs = []  # a URC of before the unplug is gone with the old link
        return self.start()

    def fail_next(self, kind, count=1):
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault %r (one of %s)" % (kind, ", ".join(FAULT_KINDS)))
        with self.lock:
            self.faults.extend([kind] * count)

    def _take_fault(self, *kinds):
        with self.lock:
            for i, kind in enumerate(self.faults):
                if kind in kinds:
                    del self.faults[i]
                    return kind
        return None

    # -- storage and network ------------------------------------------------
    def receive_sms(self, message):
        """Stores an incoming SMS (a gsm_network.Message); False when full."""
        with self.lock:
            free = [i for i in range(1, self.storage_size + 1) if i not in self.storage]
            if not free:
                return False
            index = free[0]
            when = now(self.network.timezone if self.network is not None else None)
            self.storage[index] = StoredSms(index, 0, message.sender, message.text, when,
                                            message.alphabet, message.udh)
            if self.cnmi_mt in (1, 2):
                self._urc(b'+CMTI: "SM",%d' % index)
        return True

    def status_report(self, message, delivered_at):
        """The network says an SMS we sent with a status-report request arrived."""
        with self.lock:
            if self.cnmi_ds != 1:
                return  # <ds>=0: the report is not routed to the TE
            report = StoredSms(0, 0, message.destination, "", delivered_at,
                               report=(message.reference, message.submitted, delivered_at))
            if self.text_mode:
                ra = to_te(message.destination, self.charset).decode("latin-1")
                self._urc(('+CDS: 6,%d,"%s",%d,"%s","%s",0' % (
                    message.reference, ra, 145 if message.destination.startswith("+") else 129,
                    scts_text(message.submitted), scts_text(delivered_at))).encode("latin-1"))
            else:
                hex_pdu, length = status_report_pdu(report)
                self._urc(b"+CDS: %d\r\n%s" % (length, hex_pdu.encode()))

    def inject(self, sender, text):
        """An SMS arrives from outside the simulated network (e.g. a stranger)."""
        return self.receive_sms(Message(sender, self.number, text))

    # -- serving ----------------------------------------------------------
    def _urc(self, line):
        with self.lock:
            self.urcs.append(b"\r\n" + line + b"\r\n")
        self._wake()

    def _wake(self):
        try:
            os.write(self._wake_w, b"!")
        except (OSError, TypeError):
            pass  # not running: the URC waits for the next start

    def _write(self, data):
        try:
            os.write(self._master, data)
        except OSError:
            pass  # nobody listening; a real modem drops output too

    def _input_waiting(self):
        try:
            return bool(select.select([self._master], [], [], 0)[0])
        except (OSError, ValueError, TypeError):
            return False

    def _flush_urcs(self):
        """URCs go out only while the link is idle: no command half typed,
        none waiting to be read, no `> ` prompt open."""
        if self._input_waiting():
            return
        with self.lock:
            urcs, self.urcs = self.urcs, []
        for urc in urcs:
            self._write(urc)

    def _serve(self):
        buffer = bytearray()
        prompt = None  # destination (text mode) or TPDU length (PDU mode) while in "> "
        while self._running:
            try:
                ready, _, _ = select.select([self._master, self._wake_r], [], [], 1.0)
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                data = os.read(self._master, 4096) if self._master in ready else b""
            except (OSError, ValueError, TypeError):
                return
            for byte in data:
                b = bytes((byte,))
                if prompt is not None:
                    if b == CTRL_Z:
                        self._finish_send(prompt, bytes(buffer))
                        buffer.clear()
                        prompt = None
                    elif b == ESC:
                        buffer.clear()
                        prompt = None
                        self._final(b"OK")  # ESC cancels the message (27.005 3.5.1)
                    else:
                        if self.echo:
                            self._write(b)
                        buffer += b
                    continue
                if b in (b"\r", b"\n"):
                    if buffer:
                        line = bytes(buffer).decode("latin-1")
                        buffer.clear()
                        prompt = self._command(line)
                    continue
                buffer += b
                if len(buffer) > 1024:  # a real modem discards an endless line too
                    buffer.clear()
            if not buffer and prompt is None and self.urcs:
                self._flush_urcs()

    def _final(self, result, info=()):
        """Writes information lines and the final result, applying faults."""
        if self.delay_s:
            time.sleep(self.delay_s)
        # 27.007 4.1: information text is "<CR><LF>lines<CR><LF>", lines of one
        # response separated by a single <CR><LF>; then the final result code
        reply = (b"\r\n" + b"\r\n".join(info) + b"\r\n" if info else b"") + b"\r\n" + result + b"\r\n"
        fault = self._take_fault("garbage", "truncate", "noise", "silent")
        if fault == "garbage":
            reply = GARBAGE
        elif fault == "truncate":
            reply = reply[: max(1, len(reply) // 2 - 1)]
            if reply.endswith(b"OK"):
                reply = reply[:-1]
        elif fault == "noise":
            reply = b"\r\n" + GARBAGE + b"\r\n" + reply
        elif fault == "silent":
            return
        self._write(reply)

    def _ok(self, *info):
        return self._final(b"OK", [line for line in info if line])

    def _error(self, family, code):
        if self.cmee == 0 and family == "CME":
            return self._final(b"ERROR")
        detail = ERROR_TEXT.get((family, code), "") if self.cmee == 2 else str(code)
        self._final(("+%s ERROR: %s" % (family, detail)).encode())

    def _command(self, line):
        self.commands.append(line)
        if self.echo:
            self._write(line.encode("latin-1") + b"\r")
        upper = line.strip().upper()
        if not upper.startswith("AT"):
            self._final(b"ERROR")
            return None
        try:
            return self._dispatch(line.strip()[2:], upper[2:])
        except CommandError as exc:
            self._error(exc.family, exc.code)
        except (ValueError, IndexError, UnicodeError):
            self._final(b"ERROR")
        return None

    def _dispatch(self, raw, cmd):
        """raw: the command after 'AT' as typed; cmd: the same upper-cased.
        Returns the pending-send state when a `> ` prompt was issued."""
        if cmd.endswith("=?"):
            answer = TEST_FORMS.get(cmd[:-2])
            if answer is None:
                return self._final(b"ERROR")
            return self._ok(answer)
        if cmd in ("", "Z"):
            if cmd == "Z":
                self._reset_settings()
            return self._ok()
        if cmd in ("E0", "E1"):
            self.echo = cmd == "E1"
            return self._ok()
        if cmd == "I":
            return self._ok(MODEL[7:] + b" R14.18")
        if cmd == "+CGMI":
            return self._ok(MANUFACTURER)
        if cmd == "+CGMM":
            return self._ok(MODEL)
        if cmd == "+CGMR":
            return self._ok(REVISION)
        if cmd in ("+CGSN", "+GSN"):
            return self._ok(self.imei().encode())
        if cmd == "+CIMI":
            return self._ok(("26201" + self.number[-10:]).encode())
        if cmd.startswith("+CMEE="):
            self.cmee = int(cmd[6:])
            return self._ok()
        if cmd == "+CMEE?":
            return self._ok(b"+CMEE: %d" % self.cmee)
        if cmd == "+CPIN?":
            return self._ok(b"+CPIN: READY")
        if cmd == "+CNUM":
            return self._ok(('+CNUM: "","%s",%d' % (self.number, 145 if self.number.startswith("+") else 129)).encode())
        if cmd.startswith("+CFUN"):
            return self._cfun(cmd)
        if cmd == "+COPS?":
            if not self.registered:
                return self._ok(b"+COPS: 0")
            return self._ok(b'+COPS: 0,0,"' + OPERATOR + b'"')
        if cmd.startswith("+CSCA"):
            return self._csca(raw)
        if cmd.startswith("+CMGF"):
            return self._mode(cmd)
        if cmd.startswith("+CSCS"):
            return self._charset(raw)
        if cmd.startswith("+CREG"):
            return self._creg(cmd)
        if cmd == "+CSQ":
            return self._ok(b"+CSQ: %d,0" % (self.signal if self.registered and self.cfun == 1 else 99))
        if cmd.startswith("+CPMS"):
            return self._cpms(cmd)
        if cmd.startswith("+CNMI"):
            return self._cnmi(cmd)
        if cmd.startswith("+CSMP"):
            return self._csmp(cmd)
        if cmd.startswith(NO_EFFECT):
            return self._ok()
        if cmd.startswith("+CMGS="):
            return self._start_send(raw[6:])
        if cmd.startswith("+CMGR="):
            return self._read(int(cmd[6:]))
        if cmd.startswith("+CMGL"):
            return self._list(raw[6:] if cmd.startswith("+CMGL=") else None)
        if cmd.startswith("+CMGD="):
            return self._delete(cmd[6:])
        return self._final(b"ERROR")  # AT+CLAC, ^ and + commands of other makers: unknown

    def imei(self):
        """A stable 15-digit IMEI (Luhn check digit) made from the number."""
        body = ("86" + "".join(c for c in self.number if c.isdigit()))[-14:].rjust(14, "0")
        total = 0
        for i, c in enumerate(reversed(body)):
            d = int(c) * (2 if i % 2 == 0 else 1)
            total += d - 9 if d > 9 else d
        return body + str((10 - total % 10) % 10)

    def _cfun(self, cmd):
        if cmd == "+CFUN?":
            return self._ok(b"+CFUN: %d" % self.cfun)
        value = int(cmd[6:].split(",")[0])
        if value not in (0, 1, 4):
            raise CommandError("CME", CME_BAD_PARAMETERS)
        self.cfun = value
        return self._ok()

    def _csca(self, raw):
        if raw.upper() == "+CSCA?":
            number = to_te(self.smsc, self.charset).decode("latin-1")
            return self._ok(('+CSCA: "%s",%d' % (number, 145 if self.smsc.startswith("+") else 129)).encode())
        self.smsc = from_te(_quoted(raw[6:].split(",")[0]).encode("latin-1"), self.charset)
        return self._ok()

    def _mode(self, cmd):
        if cmd == "+CMGF?":
            return self._ok(b"+CMGF: %d" % self.text_mode)
        value = cmd[6:]
        if value not in ("0", "1"):
            raise CommandError("CMS", CMS_NOT_ALLOWED)
        self.text_mode = value == "1"
        return self._ok()

    def _charset(self, raw):
        if raw.upper() == "+CSCS?":
            return self._ok(('+CSCS: "%s"' % self.charset).encode())
        value = _quoted(raw[6:]).upper()
        if value not in CHARSETS:
            raise CommandError("CME", CME_BAD_PARAMETERS)
        self.charset = value
        return self._ok()

    def _creg(self, cmd):
        if cmd == "+CREG?":
            return self._ok(b"+CREG: %d,%d" % (self.creg_n, 1 if self.registered and self.cfun == 1 else 2))
        self.creg_n = int(cmd[6:])
        return self._ok()

    def _cpms(self, cmd):
        used, total = len(self.storage), self.storage_size
        if cmd == "+CPMS?":
            fields = ",".join('"%s",%d,%d' % (memory, used, total) for memory in self.memories)
            return self._ok(("+CPMS: " + fields).encode())
        memories = [_quoted(m) for m in cmd[6:].split(",")]
        if not memories or len(memories) > 3 or any(m not in MEMORIES for m in memories):
            raise CommandError("CMS", CMS_NOT_ALLOWED)
        self.memories[:len(memories)] = memories
        return self._ok(("+CPMS: %d,%d,%d,%d,%d,%d" % ((used, total) * 3)).encode())

    def _cnmi(self, cmd):
        if cmd == "+CNMI?":
            return self._ok(b"+CNMI: 2,%d,0,%d,0" % (self.cnmi_mt, self.cnmi_ds))
        parts = [int(p) if p.strip() else 0 for p in cmd[6:].split(",")]
        mt = parts[1] if len(parts) > 1 else 0
        ds = parts[3] if len(parts) > 3 else 0
        if mt not in (0, 1, 2, 3) or ds not in (0, 1):
            raise CommandError("CMS", CMS_NOT_SUPPORTED)  # e.g. <ds>=2: status reports are not stored
        self.cnmi_mt, self.cnmi_ds = mt, ds
        return self._ok()

    def _csmp(self, cmd):
        if cmd == "+CSMP?":
            return self._ok(("+CSMP: %d,%d,%d,%d" % tuple(self.csmp)).encode())
        values = [int(v) if v.strip() else None for v in cmd[6:].split(",")]
        for i, value in enumerate(values[:4]):
            if value is not None:
                self.csmp[i] = value
        return self._ok()

    # -- sending ----------------------------------------------------------
    def _start_send(self, argument):
        if not self.registered or self.cfun != 1:
            raise CommandError("CMS", CMS_NO_NETWORK)
        if self.text_mode:
            destination = from_te(_quoted(argument.split(",")[0]).encode("latin-1"), self.charset)
            if not destination:
                raise CommandError("CMS", CMS_INVALID_TEXT)
            state = ("text", destination)
        else:
            state = ("pdu", int(argument))
        if self._take_fault("send_error"):
            self._final(b"ERROR")
            return None
        self._write(b"\r\n> ")
        return state

    def _text_message(self, destination, body):
        """A Message from a text-mode body in the TE character set; the
        alphabet and the status-report request come from AT+CSMP."""
        try:
            text = from_te(body, self.charset)
        except (ValueError, UnicodeError):
            raise CommandError("CMS", CMS_INVALID_TEXT)
        alphabet = UCS2 if self.csmp[3] & 0x0C == 0x08 else GSM7
        size = len(text) if alphabet == UCS2 else len(gsm_pdu.encodeGsm7(text, discardInvalid=True))
        if size > TEXT_MODE_MAX[alphabet]:
            raise CommandError("CMS", CMS_INVALID_TEXT)
        if alphabet == GSM7:
            try:
                gsm_pdu.encodeGsm7(text)
            except ValueError:
                raise CommandError("CMS", CMS_INVALID_TEXT)  # not in the GSM-7 alphabet
        return Message(self.number, destination, text, alphabet=alphabet, status_report=bool(self.csmp[0] & 0x20))

    def _finish_send(self, state, body):
        if self.echo:
            self._write(b"\r\n")  # SIM800 echoes the Ctrl-Z as a line end
        try:
            if state[0] == "text":
                message = self._text_message(state[1], body)
            else:
                message = self._parse_submit(state[1], body)
            if self._take_fault("send_cms"):
                raise CommandError("CMS", CMS_UNKNOWN)
            if not self.registered:
                raise CommandError("CMS", CMS_NO_NETWORK)
        except CommandError as exc:
            return self._error(exc.family, exc.code)
        # TP-MR: the modem numbers the messages it submits; the +CMGS answer says which.
        self.message_reference = (self.message_reference + 1) % 256
        message.reference = self.message_reference
        self.sent.append((message.destination, message.text))
        if self.network is not None:
            # Before the answer: once a client sees +CMGS the message is in the network.
            # A status report it causes is a URC, written after this reply.
            self.network.submit(self.number, message.destination, message.text, message)
        self._final(b"OK", [b"+CMGS: %d" % self.message_reference])

    @staticmethod
    def _parse_submit(tpdu_length, body):
        hex_pdu = body.decode("latin-1").strip()
        try:
            smsc_octets = int(hex_pdu[:2], 16)
            if (len(hex_pdu) // 2) - 1 - smsc_octets != tpdu_length:
                raise ValueError("length mismatch")
            return decode_submit(hex_pdu)
        except Exception:  # the decoder raises assorted errors on junk; all mean one thing here
            raise CommandError("CMS", CMS_INVALID_PDU)

    # -- reading ----------------------------------------------------------
    def _text_body(self, sms):
        # 27.005 3.1: UCS2 (and any message with a header) is shown as hex of its
        # user data octets; GSM-7 text in the TE character set.
        if sms.alphabet == UCS2:
            return sms.text.encode("utf-16-be").hex().upper().encode()
        return to_te(sms.text, self.charset)

    def _header_and_body(self, sms, index_prefix):
        """Information lines for one message in the current mode."""
        if self.text_mode:
            number = to_te(sms.number, self.charset).decode("latin-1")
            fields = '"%s","%s","","%s"' % (STATUS_TEXT[sms.status], number, scts_text(sms.when))
            return [(index_prefix + fields).encode("latin-1"), self._text_body(sms)]
        hex_pdu, length = deliver_pdu(sms)
        return [(index_prefix + "%d,,%d" % (sms.status, length)).encode(), hex_pdu.encode()]

    def _read(self, index):
        with self.lock:
            sms = self.storage.get(index)
            if sms is None:
                raise CommandError("CMS", CMS_INVALID_INDEX)
            info = self._header_and_body(sms, "+CMGR: ")
            if sms.status == 0:
                sms.status = 1
        return self._final(b"OK", info)

    def _list(self, argument):
        wanted = 4
        if argument:
            argument = _quoted(argument).upper()
            wanted = int(argument) if argument.isdigit() else STATUS_BY_TEXT.get(argument)
            if wanted is None or wanted > 4:
                raise CommandError("CMS", CMS_NOT_ALLOWED)
        info = []
        with self.lock:
            for index in sorted(self.storage):
                sms = self.storage[index]
                if wanted in (4, sms.status):
                    info.extend(self._header_and_body(sms, "+CMGL: %d," % index))
                    if sms.status == 0:
                        sms.status = 1
        return self._final(b"OK", info)

    def _delete(self, argument):
        parts = argument.split(",")
        index = int(parts[0])
        flag = int(parts[1]) if len(parts) > 1 else 0
        with self.lock:
            if flag == 4:
                self.storage.clear()
            elif flag:
                # 1 read, 2 read+sent, 3 read+sent+unsent (27.005 3.5.4)
                doomed = {1: (1,), 2: (1, 3), 3: (1, 2, 3)}[flag]
                for i in [i for i, s in self.storage.items() if s.status in doomed]:
                    del self.storage[i]
            elif index not in self.storage:
                raise CommandError("CMS", CMS_INVALID_INDEX)
            else:
                del self.storage[index]
        self._final(b"OK")
        if self.network is not None:
            self.network.flush()  # space freed: the SC retries waiting messages


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpseal_tools.sim.modem", description=__doc__.split("\n")[0])
    parser.add_argument("--modem", action="append", default=[], metavar="NUMBER", help="add a modem with this phone number")
    parser.add_argument("--storage", type=int, default=10, help="SMS storage slots per modem (default 10)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every final result code")
    parser.add_argument("--gammu-phone", action="append", default=[], metavar="NUMBER:FOLDER[:SENT]", help="a gammu dummy phone folder on the network")
    args = parser.parse_args(argv)
    if not args.modem:
        parser.error("give at least one --modem NUMBER")
    network = Network()
    modems = [SimModem(number, network, storage_size=args.storage, delay_s=args.delay) for number in args.modem]
    for spec in args.gammu_phone:
        parts = spec.split(":")
        GammuPhone(parts[0], parts[1], network, parts[2] if len(parts) > 2 else None).start()
    for modem in modems:
        print(modem.number, modem.start(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
