# AT-command modem driver (3GPP TS 27.007 general/network, TS 27.005 SMS in
# text mode) over a machine.UART-like object: read(n), write(b), any().
#
# It reads replies instead of sleeping: every command waits for its final
# result code (OK, ERROR, +CME ERROR: n, +CMS ERROR: n) up to a deadline, so
# a slow network costs only the time it takes, and a dead or babbling modem
# costs at most the timeout. Unsolicited `+CMTI: "SM",<index>` lines (new SMS)
# can arrive at any moment, also inside another reply: they are taken out
# wherever they appear and queued in `new_messages`.
# Kept small on purpose: every method is RAM on a 40 KB heap.
import time

TIMEOUT_MS = 5000
PROMPT_TIMEOUT_MS = 5000  # AT+CMGS: until the "> " prompt
SEND_TIMEOUT_MS = 60000  # AT+CMGS: Ctrl-Z until +CMGS (SIM800 manual: up to 60 s)
MAX_LINE = 512  # a longer "line" is noise; dropped so the buffer stays bounded
# SIM800 start-up chatter and URCs we do not act on
CHATTER = (b"RING", b"Call Ready", b"SMS Ready", b"RDY", b"+CFUN: 1", b"+CPIN: READY")


class ModemError(Exception):
    """args[0]: the final result line (b"ERROR", b"+CMS ERROR: 500", ...) or
    b"timeout" when none came in time (silent, truncated or garbled reply)."""


def _field(line, n):
    # n-th comma-separated field after the colon, quotes removed. The fields
    # used here come before the time stamp, whose comma is inside quotes.
    return line[line.find(b":") + 1 :].split(b",")[n].strip().strip(b'"')


class Modem:
    def __init__(self, uart, idle=None):
        """`idle` is called while waiting (the app's watchdog feed): an SMS
        can take a minute to go out, far longer than a watchdog period."""
        self.uart = uart
        self.idle = idle
        self._buf = bytearray()
        self.new_messages = []  # storage indexes announced by +CMTI
        self.garbage = 0  # lines of binary junk, skipped
        self.timeouts = 0
        self.errors = 0

    def _line(self, deadline):
        """The next reply line (bytes), or None at the deadline."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i]).strip()
                self._buf = self._buf[i + 1 :]
                if not line or line in CHATTER:
                    continue
                if max(line) > 0x7E or min(line) < 0x20:  # replies and base64 are printable
                    self.garbage += 1
                elif line.startswith(b"+CMTI:"):
                    try:
                        self.new_messages.append(int(_field(line, 1)))
                    except ValueError:
                        self.garbage += 1
                else:
                    return line
                continue
            if self._buf.startswith(b"> ") or self._buf.endswith(b"\n> "):
                self._buf = bytearray()
                return b">"
            if len(self._buf) > MAX_LINE:
                self.garbage += 1
                self._buf = bytearray()
            n = self.uart.any()
            if n:
                self._buf.extend(self.uart.read(n) or b"")
            elif time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return None
            else:
                if self.idle:
                    self.idle()
                time.sleep_ms(5)

    def drain(self):
        """Takes in whatever the modem said unasked (URCs, late replies)."""
        while self._line(time.ticks_ms()) is not None:
            pass

    def command(self, command, timeout_ms=TIMEOUT_MS, body=None):
        """Sends `command` (str, no CR); returns its information lines (bytes).
        With `body` (AT+CMGS): waits for "> ", sends body + Ctrl-Z. Raises
        ModemError."""
        self.drain()
        echo = command.encode()
        self.uart.write(echo + b"\r")
        deadline = time.ticks_add(time.ticks_ms(), PROMPT_TIMEOUT_MS if body else timeout_ms)
        info = []
        while True:
            line = self._line(deadline)
            if line is None:
                self.timeouts += 1
                if body:
                    self.uart.write(b"\x1b")  # leave the prompt state, whatever it is
                raise ModemError(b"timeout")
            if line == b">" and body:
                self.uart.write(body + b"\x1a")
                body = None
                deadline = time.ticks_add(time.ticks_ms(), SEND_TIMEOUT_MS)
            elif line == b"OK":
                return info
            elif line == b"ERROR" or line.startswith(b"+CME ERROR:") or line.startswith(b"+CMS ERROR:"):
                self.errors += 1
                raise ModemError(line)
            elif line != echo:  # with echo on, the command comes back first
                info.append(line)

    def init(self):
        """Brings the modem into the state this driver expects."""
        for attempt in (1, 2, 3):  # SIM800 autobauds: the first ATs may be lost
            try:
                self.command("AT", 1000)
                break
            except ModemError:
                if attempt == 3:
                    raise
        for command in ("ATE0", "AT+CMEE=1", "AT+CMGF=1", 'AT+CSCS="GSM"', "AT+CNMI=2,1,0,0,0"):
            self.command(command)  # no echo, numeric errors, text mode, +CMTI on

    def _value(self, command, prefix, n):
        for line in self.command(command):
            if line.startswith(prefix):
                return int(_field(line, n))
        return None

    def registered(self):
        """True when registered at home or roaming (+CREG stat 1 or 5)."""
        return self._value("AT+CREG?", b"+CREG:", 1) in (1, 5)

    def signal_dbm(self):
        """AT+CSQ rssi 0..31 as -113..-51 dBm; None when unknown (99)."""
        rssi = self._value("AT+CSQ", b"+CSQ:", 0)
        return None if rssi in (None, 99) else -113 + 2 * rssi

    def send_sms(self, number, text):
        """One text-mode SMS (text: bytes, <= 160 GSM-7 characters); returns
        the message reference. Raises ModemError."""
        for line in self.command('AT+CMGS="%s"' % number, body=text):
            if line.startswith(b"+CMGS:"):
                return int(_field(line, 0))
        return None

    def read_sms(self, index):
        """(sender, text bytes) at `index`, or None for an empty slot."""
        try:
            info = self.command("AT+CMGR=%d" % index)
        except ModemError as exc:
            if exc.args[0].endswith(b" 321"):  # +CMS ERROR: invalid memory index
                return None
            raise
        if info and info[0].startswith(b"+CMGR:"):
            return _field(info[0], 1).decode(), info[1] if len(info) > 1 else b""
        return None

    def list_sms(self):
        """[(index, sender, text bytes)] of every stored SMS (AT+CMGL="ALL")."""
        info = self.command('AT+CMGL="ALL"', 10000)
        out = []
        for i in range(len(info)):
            if info[i].startswith(b"+CMGL:"):
                body = info[i + 1] if i + 1 < len(info) and not info[i + 1].startswith(b"+CMGL:") else b""
                out.append((int(_field(info[i], 0)), _field(info[i], 2).decode(), body))
        return out

    def delete_sms(self, index):
        self.command("AT+CMGD=%d" % index)
