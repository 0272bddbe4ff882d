"""`mpseal receive --modem PORT`: SMS from the host's own modem into the database.

A thread with its own database connection (so the asyncio UDP/HTTP side is
never blocked by a serial port; each side sees the other's writes through
the storage's per-device change counters). New SMS are found by the +CMTI URC and, in case
one was lost or SMS arrived while we were away, by listing the storage every
`sweep_s` seconds.

Order per SMS: ingest (committed) -> delete from the modem -> send the ack.
A crash after the commit leaves the SMS on the modem: it is read again, the
pipeline calls it a duplicate, nothing is stored twice and the ack goes out
again. An SMS is deleted only once its fate is on disk (stored, duplicate, or
refused and counted); a database failure leaves it for the next round.

A modem that vanishes (USB unplugged, modem reboot) is reopened with backoff.
"""
import logging
import threading

from mpseal_host.modem import AtModem, ModemError, ModemGone
from mpseal_host.sms_ingest import SmsIngest, summary, taken, text_from_packet
from mpseal_host.storage import NO_DEVICE, open_storage

log = logging.getLogger("mpseal.sms")

SWEEP_S = 10.0
RECONNECT_DELAYS_S = (0.5, 1, 2, 5, 10, 30)  # then every 30 s
MAX_TIMEOUTS_IN_A_ROW = 3  # then the modem is taken as gone and opened again
BAD_PDU = "bad_pdu"


class ModemReceiver:
    def __init__(self, db_path, port, baud=115200, pdu_mode=False, send_acks=True, sweep_s=SWEEP_S, modem_factory=AtModem):
        self.db_path = db_path
        self.port = port
        self.send_acks = send_acks
        self.sweep_s = sweep_s
        self.modem = modem_factory(port, baud, pdu_mode=pdu_mode)
        self.stop_event = threading.Event()
        self.thread = None
        self.counters = {"sms_taken": 0, "sms_kept": 0, "acks_sent": 0, "acks_failed": 0, "modem_lost": 0, "modem_errors": 0}
        self._timeouts_in_a_row = 0
        self._undeleted = set()  # (index, sender, text) taken but still on the modem
        self._delete_error = None

    def start(self):
        self.thread = threading.Thread(target=self.run, name="mpseal-modem", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout=10.0):
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self):
        storage = open_storage(self.db_path)
        self.sms = SmsIngest(storage)
        attempt = 0
        try:
            while not self.stop_event.is_set():
                try:
                    self.modem.open()
                    attempt = 0
                    log.info("modem on %s ready (%s mode)", self.port, "PDU" if self.modem.pdu_mode else "text")
                    self._serve()
                except ModemGone as exc:
                    self.counters["modem_lost"] += 1
                    log.warning("modem lost: %s; trying again", exc)
                except ModemError as exc:
                    self.counters["modem_errors"] += 1
                    log.warning("modem on %s not usable: %s; trying again", self.port, exc)
                finally:
                    self.modem.close()
                delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
                attempt += 1
                self.stop_event.wait(delay)
        finally:
            storage.close()

    def _serve(self):
        self._guard(self._sweep)
        next_sweep = self.sweep_s
        waited = 0.0
        while not self.stop_event.is_set():
            if self.modem.wait_for_message(0.25):
                self._guard(self._take_announced)
            waited += 0.25
            if waited >= next_sweep:
                waited = 0.0
                self._guard(self._sweep)

    def _guard(self, step):
        """Runs one step; a garbled or refused command is counted, not fatal.
        Repeated timeouts mean the modem is gone in all but name."""
        try:
            step()
            self._timeouts_in_a_row = 0
        except ModemError as exc:
            self.counters["modem_errors"] += 1
            log.warning("modem: %s", exc)
            if exc.kind == "timeout":
                self._timeouts_in_a_row += 1
                if self._timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW:
                    self._timeouts_in_a_row = 0
                    raise ModemGone("%d commands in a row timed out" % MAX_TIMEOUTS_IN_A_ROW)

    def _sweep(self):
        self.modem.new_messages.clear()  # the listing covers them
        messages = self.modem.list_messages()
        if messages:
            self._take(messages)

    def _take_announced(self):
        while self.modem.new_messages:
            message = self.modem.read_message(self.modem.new_messages[0])
            self.modem.new_messages.pop(0)
            if message is not None:
                self._take([message])

    def _take(self, messages):
        # An SMS whose fate is on disk but whose delete failed is not ingested
        # again (a refusal would be counted twice): only the delete is retried.
        fresh = []
        for m in messages:
            if (m.index, m.sender, m.text) in self._undeleted:
                self._delete(m)
            elif m.error is not None:  # a PDU nobody can read: count it, make room
                log.warning("refused SMS at index %d: %s", m.index, m.error)
                self.sms.storage.count_rejection(NO_DEVICE, BAD_PDU)
                self._delete(m)
            else:
                fresh.append(m)
        results = self.sms.ingest([(m.sender, m.text) for m in fresh])
        for m, (outcome, ack) in zip(fresh, results):
            log.info("SMS from %s: %s", m.sender, summary(outcome))
            if not taken(outcome):
                self.counters["sms_kept"] += 1
                continue
            self.counters["sms_taken"] += 1
            self._delete(m)
            if ack is not None and self.send_acks:
                self._send_ack(m.sender, ack)
        if self._delete_error is not None:
            error, self._delete_error = self._delete_error, None
            raise error  # counted by _guard; the next sweep retries the delete

    def _delete(self, m):
        key = (m.index, m.sender, m.text)
        try:
            self.modem.delete_message(m.index)
            self._undeleted.discard(key)
        except ModemError as exc:
            self._undeleted.add(key)
            self._delete_error = self._delete_error or exc

    def _send_ack(self, number, ack):
        try:
            self.modem.send_sms(number, text_from_packet(ack))
            self.counters["acks_sent"] += 1
        except ModemError as exc:
            # The board sends the reading again; we store it once and ack again.
            self.counters["acks_failed"] += 1
            log.warning("ack SMS to %s not sent: %s", number, exc)


def start_modem_receiver(db_path, port, baud=115200, pdu_mode=False, send_acks=True):
    """The hook `mpseal receive --modem` calls: a running ModemReceiver."""
    return ModemReceiver(db_path, port, baud, pdu_mode=pdu_mode, send_acks=send_acks).start()


def add_modem_arguments(parser):
    """The --modem options of `mpseal receive` (commands/receiver.py)."""
    parser.add_argument("--modem", metavar="PORT", help="also take SMS from a GSM modem on this serial port (e.g. /dev/ttyUSB0)")
    parser.add_argument("--baud", type=int, default=115200, help="modem baud rate (default 115200)")
    parser.add_argument("--pdu", action="store_true", help="talk to the modem in PDU mode (default: text mode)")
    parser.add_argument("--no-sms-acks", action="store_true", help="do not answer SMS readings with an ack SMS (saves SMS; boards then resend)")


def start_from_args(args, db_path):
    """A running ModemReceiver when --modem was given, else None."""
    if not getattr(args, "modem", None):
        return None
    return start_modem_receiver(db_path, args.modem, args.baud, pdu_mode=args.pdu, send_acks=not args.no_sms_acks)
