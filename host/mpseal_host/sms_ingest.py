"""SMS in, the receiver's pipeline out: what the two host SMS paths share
(a modem on our own serial port, and gammu-smsd's RunOnReceive hook).

An SMS carries one sealed packet as base64 text (at most 160 characters;
docs/sms.md). Text that is no such packet is refused and counted here, before
the pipeline; everything else goes through Ingestor.ingest() with transport
"sms" and the sender's number, so the same checks (device, key, allowed
sender numbers, tag, replay window) apply as for UDP and HTTP.
"""
import base64
import binascii
import logging

from mpseal import errors
from mpseal.errors import InvalidPacket
from mpseal_host.ingest import Ingestor
from mpseal_host.pipeline import DUPLICATE, REJECTED, STORED, Outcome
from mpseal_host.rejections import NOT_BASE64, STORAGE_ERROR
from mpseal_host.storage import NO_DEVICE, StorageError

log = logging.getLogger("mpseal.sms")

TRANSPORT = "sms"
MAX_SMS_TEXT = 160  # GSM-7 characters of one single-part SMS
EMPTY_SMS = "empty_sms"


def normalize_number(number):
    """'+49 151 123-456' -> '+49151123456' (allowed numbers are stored this way)."""
    number = (number or "").strip()
    return ("+" if number.startswith("+") else "") + "".join(ch for ch in number if ch.isdigit())


def packet_from_text(text):
    """The packet bytes an SMS text carries; InvalidPacket(reason) if none."""
    text = (text or "").strip()
    if not text:
        raise InvalidPacket(EMPTY_SMS)
    if len(text) > MAX_SMS_TEXT:
        raise InvalidPacket(errors.OVERSIZE, "%d characters, one SMS holds %d" % (len(text), MAX_SMS_TEXT))
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidPacket(NOT_BASE64, "SMS text is not a base64 packet")


def text_from_packet(packet):
    text = base64.b64encode(packet).decode("ascii")
    if len(text) > MAX_SMS_TEXT:
        raise ValueError("packet of %d bytes does not fit one SMS" % len(packet))
    return text


def taken(outcome):
    """True once the SMS may be deleted: stored, a known duplicate, or
    refused for good (and counted). False only when the database failed,
    so the message stays in the modem and is tried again."""
    return outcome.reason != STORAGE_ERROR


class SmsIngest:
    def __init__(self, storage, ingestor=None):
        self.storage = storage
        self.ingestor = ingestor or Ingestor(storage)

    def _refuse(self, exc, sender):
        outcome = Outcome(REJECTED, TRANSPORT, exc.reason, detail="%s from %s" % (exc, sender))
        try:
            self.storage.count_rejection(NO_DEVICE, exc.reason)
        except StorageError as db_exc:  # the database failed; counted next time round
            log.error("could not count a refused SMS: %s", db_exc)
            outcome.reason = STORAGE_ERROR
            return outcome
        log.warning("refused SMS from %s: %s", sender, exc)
        return outcome

    def ingest(self, messages):
        """messages: [(sender, text)] -> [(Outcome, ack bytes or None)], in order."""
        results = [None] * len(messages)
        items, positions = [], []
        for i, (sender, text) in enumerate(messages):
            sender = normalize_number(sender)
            try:
                packet = packet_from_text(text)
            except InvalidPacket as exc:
                results[i] = (self._refuse(exc, sender), None)
                continue
            items.append((packet, TRANSPORT, sender))
            positions.append(i)
        if items:
            for i, result in zip(positions, self.ingestor.ingest(items)):
                results[i] = result
        return results


def summary(outcome):
    """One line for logs and the CLI."""
    who = outcome.device or ("device id %s" % outcome.device_id if outcome.device_id is not None else "?")
    if outcome.status in (STORED, DUPLICATE):
        return "%s %s seq %s" % (outcome.status, who, outcome.seq)
    return "rejected (%s): %s" % (outcome.reason, outcome.detail or who)
