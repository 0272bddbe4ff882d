# SMS through an AT-command modem (SIM800L class) on the board's UART.
#
# One sealed packet per SMS, in text mode, base64: the base64 alphabet is
# GSM-7 safe, and a sealed 3-value reading (59 bytes) is 80 characters, far
# inside one 160-character SMS. The host answers with a sealed ack SMS (with
# any queued commands riding on it); send() waits for it like UDP waits for
# its reply datagram. Commands the host sends unasked come in through poll().
#
# This transport only moves bytes: the app opens every packet with the
# host->device keys (docs/firmware.md). It does drop SMS from numbers other
# than the host's before the app sees them, and counts them.
#
# config.json: "sms": {"host_number": "+49151...", "uart": 0, "baud": 9600,
#                      "ack_timeout_s": 60}
import binascii
import time

import hw
import modem as at

MAX_SMS_CHARS = 160  # GSM-7 characters in one SMS
SWEEP_EVERY_MS = 5000  # while waiting: also list storage, in case a +CMTI was lost
TYPE_ACK = 2  # mpseal.TYPE_ACK: byte 1 of the cleartext header (no key needed)
TYPE_RESYNC = 5  # mpseal.control.TYPE_RESYNC: the answer to a resync request, also waited for


def _digits(number):
    # '+49 151 ...' and '49151...' are one number; modems differ in the '+'
    return bytes(c for c in number.encode() if 48 <= c <= 57)


def decode_text(text):
    """Packet bytes from an SMS body, or None if it is no base64 packet."""
    text = text.strip()
    if not text or len(text) > MAX_SMS_CHARS:
        return None
    try:
        packet = binascii.a2b_base64(text)
    except ValueError:  # binascii.Error on CPython is a ValueError
        return None
    # a2b_base64 skips characters outside the alphabet: accept canonical text only
    return packet if binascii.b2a_base64(packet).strip() == text else None


class Transport:
    name = "sms"

    def __init__(self, config):
        sms = config.data.get("sms")
        if not isinstance(sms, dict) or not isinstance(sms.get("host_number"), str):
            raise ValueError('config.json: transport "sms" needs "sms": {"host_number": "+49..."}')
        self.host_number = sms["host_number"]
        self.host_digits = _digits(self.host_number)
        self.uart_id = sms.get("uart", 0)
        self.baud = sms.get("baud", 9600)
        self.ack_timeout_ms = int(sms.get("ack_timeout_s", 60)) * 1000
        self.modem = at.Modem(None, self._idle)
        self.ready = False
        self.inbox = []  # downlink packets (bytes) not yet handed to the app
        # sent, send_failed, no_network, not_a_packet, unknown_sender, oversize
        self.stats = [0, 0, 0, 0, 0, 0]

    def _idle(self):
        idle = getattr(self, "idle", None)  # set by transports.load
        if idle:
            idle()

    def counters(self):
        m = self.modem
        s = self.stats
        return {"sms_sent": s[0], "sms_send_failed": s[1], "no_network": s[2], "sms_not_a_packet": s[3],
                "sms_unknown_sender": s[4], "oversize": s[5], "modem_timeouts": m.timeouts, "modem_errors": m.errors, "modem_garbage": m.garbage}

    def _ensure_ready(self):
        if not self.ready:
            if self.modem.uart is None:
                self.modem.uart = hw.modem_uart(self.uart_id, self.baud)
            self.modem.init()
            self.ready = True

    def _trouble(self, exc):
        # A timeout may mean the modem rebooted (brown-out on a 2 A burst) and
        # lost its settings: initialise it again before the next use. OSError:
        # the serial device went away (unix port): open it again next time.
        if isinstance(exc, OSError):
            self.modem.uart = None
            self.ready = False
        elif exc.args[0] == b"timeout":
            self.ready = False

    def _accept(self, sender, text):
        if _digits(sender) != self.host_digits:
            self.stats[4] += 1
            return
        packet = decode_text(text)
        if packet is None:
            self.stats[3] += 1
        else:
            self.inbox.append(packet)

    def _collect(self, sweep):
        """Reads and deletes new SMS into self.inbox. `sweep` lists the whole
        storage (SMS that came while off, or whose +CMTI was garbled)."""
        m = self.modem
        m.drain()
        if sweep:
            for index, sender, text in m.list_sms():
                m.delete_sms(index)
                self._accept(sender, text)
        while m.new_messages:
            index = m.new_messages.pop(0)
            message = m.read_sms(index)
            if message is not None:  # None: already taken by a sweep
                m.delete_sms(index)
                self._accept(message[0], message[1])

    def send(self, packet):
        text = binascii.b2a_base64(packet).strip()
        if len(text) > MAX_SMS_CHARS:  # more than 120 bytes: never fits, counted
            self.stats[5] += 1
            self.why = "packet too long for one SMS"
            return None
        try:
            self._ensure_ready()
            if not self.modem.registered():
                self.stats[2] += 1
                self.why = "no mobile network"
                return None
            self.modem.send_sms(self.host_number, text)
        except (at.ModemError, OSError) as exc:
            self.stats[1] += 1
            self._trouble(exc)
            self.why = "modem trouble: %s" % exc
            return None
        self.stats[0] += 1
        # wait for the ack SMS; other packets (commands) wait for poll()
        start = last_sweep = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < self.ack_timeout_ms:
            sweep = time.ticks_diff(time.ticks_ms(), last_sweep) >= SWEEP_EVERY_MS
            if sweep:
                last_sweep = time.ticks_ms()
            try:
                self._collect(sweep)
            except (at.ModemError, OSError) as exc:
                self._trouble(exc)
                return None
            for i in range(len(self.inbox)):
                if len(self.inbox[i]) > 1 and self.inbox[i][1] in (TYPE_ACK, TYPE_RESYNC):
                    return self.inbox.pop(i)
            self._idle()
            time.sleep_ms(50)
        self.why = "no ack SMS from %s" % self.host_number
        return None

    def poll(self):
        if not self.inbox:
            try:
                self._ensure_ready()
                self._collect(True)
            except (at.ModemError, OSError) as exc:
                self._trouble(exc)
        return self.inbox.pop(0) if self.inbox else None

    def close(self):
        pass
