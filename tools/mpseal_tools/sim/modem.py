"""A simulated GSM modem on a pseudo-terminal, for tests and demos.

Enough of 3GPP TS 27.007 (general, network) and TS 27.005 (SMS) for both
ends of the SMS transport: the board's firmware/modem.py and the host's
mpseal_host/modem.py talk to it exactly as to a SIM800L or a USB stick.

  modem = SimModem("+4915100000001", network)
  path = modem.start()            # e.g. /dev/pts/7 (or the stable `link`)

Several modems joined to one Network can text each other by number: an SMS
sent with AT+CMGS lands in the receiver's storage ("SM") and, with AT+CNMI
set, raises the URC `+CMTI: "SM",<index>`. A GammuPhone joins the network
with a gammu `dummy` phone folder: SMS to it become files gammu-smsd reads;
SMS gammu-smsd sends (its sent folder) go out into the network.

Faults are data on the modem: `registered`, `delay_s`, and fail_next(kind):
  "send_cms"  after the text + Ctrl-Z: `+CMS ERROR: 500` (network refused)
  "send_error" the `> ` prompt is answered by ERROR (modem busy)
  "garbage"   the next reply is replaced by binary junk (no final result)
  "truncate"  the next reply is cut in half (no final result)
  "noise"     the next reply is preceded by a line of junk
  "silent"    the next command gets no reply at all
and unplug()/replug() make the device disappear and come back (the stable
`link` path is re-pointed at the new pseudo-terminal).

PDU-mode messages are built from gsmmodem.pdu's septet/number encoders and
decoded with smspdudecoder, so the host's PDU path is checked against a
second, independent implementation.

Run standalone: python -m mpseal_tools.sim.modem --modem +49151... [--modem ...]
prints one `<number> <path>` line per modem and serves until interrupted.
"""
import argparse
import datetime
import os
import select
import sys
import threading
import time
import tty

from mpseal_tools.sim.gammu_bridge import GammuPhone
from mpseal_tools.sim.gsm_network import Network, StoredSms, deliver_pdu, scts_text, submit_pdu_text

CTRL_Z = b"\x1a"
ESC = b"\x1b"
STATUS_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
STATUS_BY_TEXT = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}
TEXT_MODE_MAX = 160  # GSM-7 characters in one SMS

# +CMS ERROR codes (TS 27.005 3.2.5) and +CME ERROR codes (TS 27.007 9.2)
CMS_ME_FAILURE = 300
CMS_NOT_ALLOWED = 302
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


class CommandError(Exception):
    def __init__(self, family, code):
        Exception.__init__(self, "%s %d" % (family, code))
        self.family = family
        self.code = code


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
        self.message_reference = 0
        self._reset_settings()
        self._master = self._slave = None
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
        self.creg_n = 0

    # -- life cycle -------------------------------------------------------
    def start(self):
        """Opens the pseudo-terminal and serves it; returns the path to open."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes as on a UART
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
        if self._thread:
            self._thread.join(2)
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def unplug(self):
        """The USB stick is pulled: the open port dies (reads fail)."""
        self.stop()
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)

    def replug(self):
        """Plugged back in: a new device node, settings back to power-on."""
        self._reset_settings()
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

    # -- storage ----------------------------------------------------------
    def receive_sms(self, sender, text, when=None):
        """Stores an incoming SMS; False when the storage is full."""
        with self.lock:
            free = [i for i in range(1, self.storage_size + 1) if i not in self.storage]
            if not free:
                return False
            index = free[0]
            when = when or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            self.storage[index] = StoredSms(index, 0, sender, text, when)
            if self.cnmi_mt in (1, 2) and self._master is not None:
                self._write(b'\r\n+CMTI: "SM",%d\r\n' % index)
        return True

    def inject(self, sender, text):
        """An SMS arrives from outside the simulated network (e.g. a stranger)."""
        return self.receive_sms(sender, text)

    # -- serving ----------------------------------------------------------
    def _write(self, data):
        try:
            os.write(self._master, data)
        except OSError:
            pass  # nobody listening; a real modem drops output too

    def _serve(self):
        buffer = bytearray()
        prompt = None  # destination (text mode) or TPDU length (PDU mode) while in "> "
        while self._running:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
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
        except (ValueError, IndexError):
            self._final(b"ERROR")
        return None

    def _dispatch(self, raw, cmd):
        """raw: the command after 'AT' as typed; cmd: the same upper-cased.
        Returns the pending-send state when a `> ` prompt was issued."""
        if cmd in ("", "Z"):
            if cmd == "Z":
                self._reset_settings()
            return self._final(b"OK")
        if cmd in ("E0", "E1"):
            self.echo = cmd == "E1"
            return self._final(b"OK")
        if cmd == "I":
            return self._final(b"OK", [b"mpseal simulated modem (SIM800 dialect)"])
        if cmd.startswith("+CMEE="):
            self.cmee = int(cmd[6:])
            return self._final(b"OK")
        if cmd == "+CPIN?":
            return self._final(b"OK", [b"+CPIN: READY"])
        if cmd == "+CNUM":
            return self._final(b"OK", [('+CNUM: "","%s",145' % self.number).encode()])
        if cmd.startswith("+CMGF"):
            return self._mode(cmd)
        if cmd.startswith("+CSCS"):
            return self._charset(raw)
        if cmd.startswith("+CREG"):
            return self._creg(cmd)
        if cmd == "+CSQ":
            return self._final(b"OK", [b"+CSQ: %d,0" % (self.signal if self.registered else 99)])
        if cmd.startswith("+CPMS"):
            return self._cpms(cmd)
        if cmd.startswith("+CNMI"):
            return self._cnmi(cmd)
        if cmd.startswith("+CSMP") or cmd.startswith("+CSDH") or cmd.startswith("+CFUN"):
            return self._final(b"OK")  # accepted, no effect on the simulation
        if cmd.startswith("+CMGS="):
            return self._start_send(raw[6:])
        if cmd.startswith("+CMGR="):
            return self._read(int(cmd[6:]))
        if cmd.startswith("+CMGL"):
            return self._list(raw[6:] if cmd.startswith("+CMGL=") else None)
        if cmd.startswith("+CMGD="):
            return self._delete(cmd[6:])
        return self._final(b"ERROR")

    def _mode(self, cmd):
        if cmd == "+CMGF?":
            return self._final(b"OK", [b"+CMGF: %d" % self.text_mode])
        if cmd == "+CMGF=?":
            return self._final(b"OK", [b"+CMGF: (0,1)"])
        value = cmd[6:]
        if value not in ("0", "1"):
            raise CommandError("CMS", CMS_NOT_ALLOWED)
        self.text_mode = value == "1"
        return self._final(b"OK")

    def _charset(self, raw):
        if raw.upper() == "+CSCS?":
            return self._final(b"OK", [('+CSCS: "%s"' % self.charset).encode()])
        value = raw[6:].strip('"').upper()
        if value not in ("GSM", "IRA", "UCS2", "8859-1"):
            raise CommandError("CME", CME_BAD_PARAMETERS)
        self.charset = value
        return self._final(b"OK")

    def _creg(self, cmd):
        if cmd == "+CREG?":
            return self._final(b"OK", [b"+CREG: %d,%d" % (self.creg_n, 1 if self.registered else 2)])
        self.creg_n = int(cmd[6:])
        return self._final(b"OK")

    def _cpms(self, cmd):
        used, total = len(self.storage), self.storage_size
        if cmd == "+CPMS?":
            return self._final(b"OK", [('+CPMS: "SM",%d,%d,"SM",%d,%d,"SM",%d,%d' % ((used, total) * 3)).encode()])
        memories = [m.strip('"') for m in cmd[6:].split(",")]
        if any(m not in ("SM", "ME", "MT") for m in memories):
            raise CommandError("CMS", CMS_NOT_ALLOWED)
        return self._final(b"OK", [("+CPMS: %d,%d,%d,%d,%d,%d" % ((used, total) * 3)).encode()])

    def _cnmi(self, cmd):
        if cmd == "+CNMI?":
            return self._final(b"OK", [b"+CNMI: 2,%d,0,0,0" % self.cnmi_mt])
        parts = cmd[6:].split(",")
        self.cnmi_mt = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        return self._final(b"OK")

    # -- sending ----------------------------------------------------------
    def _start_send(self, argument):
        if not self.registered:
            raise CommandError("CMS", CMS_NO_NETWORK)
        if self.text_mode:
            destination = argument.split(",")[0].strip().strip('"')
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

    def _finish_send(self, state, body):
        if self.echo:
            self._write(b"\r\n")  # SIM800 echoes the Ctrl-Z as a line end
        try:
            if state[0] == "text":
                destination, text = state[1], body.decode("latin-1")
                if len(text) > TEXT_MODE_MAX:
                    raise CommandError("CMS", CMS_INVALID_TEXT)
            else:
                destination, text = self._parse_submit(state[1], body)
            if self._take_fault("send_cms"):
                raise CommandError("CMS", CMS_UNKNOWN)
            if not self.registered:
                raise CommandError("CMS", CMS_NO_NETWORK)
        except CommandError as exc:
            return self._error(exc.family, exc.code)
        self.message_reference = (self.message_reference + 1) % 256
        self.sent.append((destination, text))
        if self.network is not None:
            self.network.submit(self.number, destination, text)
        self._final(b"OK", [b"+CMGS: %d" % self.message_reference])

    @staticmethod
    def _parse_submit(tpdu_length, body):
        hex_pdu = body.decode("latin-1").strip()
        try:
            smsc_octets = int(hex_pdu[:2], 16)
            if (len(hex_pdu) // 2) - 1 - smsc_octets != tpdu_length:
                raise ValueError("length mismatch")
            return submit_pdu_text(hex_pdu)
        except Exception:  # the decoder raises assorted errors on junk; all mean one thing here
            raise CommandError("CMS", CMS_INVALID_PDU)

    # -- reading ----------------------------------------------------------
    def _header_and_body(self, sms, index_prefix):
        """Information lines for one message in the current mode."""
        if self.text_mode:
            fields = '"%s","%s","","%s"' % (STATUS_TEXT[sms.status], sms.number, scts_text(sms.when))
            return [(index_prefix + fields).encode("latin-1"), sms.text.encode("latin-1", "replace")]
        hex_pdu, length = deliver_pdu(sms.number, sms.text, sms.when)
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
            argument = argument.strip().strip('"').upper()
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
