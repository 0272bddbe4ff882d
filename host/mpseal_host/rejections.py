"""The one table of reasons the host refuses a packet for: the protocol's
(mpseal.errors, raised while opening) and the receiver's own. Everything
that names a reason — the pipeline, the HTTP status of /api/ingest, the SMS
hook, counters, docs/receiver.md — takes it from here; the board's copies
(firmware/transport_http.py FINAL_REJECTIONS) are tied to it by
tests/test_rejection_reasons.py.

final: the same packet will be refused again whatever happens, so a board
drops it from its queue instead of resending it (a reason that can change —
an unknown device or epoch while the registry catches up, a storage error —
is retried).
"""
from mpseal import errors

# Reasons of the receiver's own, beside mpseal.errors.*
UNKNOWN_SENDER = "unknown_sender"  # an SMS from a number the device may not send from
SEQ_REUSED = "seq_reused"  # authentic, but the number already holds a different reading
STORAGE_ERROR = "storage_error"  # authentic, not stored (database unavailable): the board sends again
NOT_BASE64 = "not_base64"  # an SMS text that is not a base64 packet
BAD_CONTENT_TYPE = "bad_content_type"  # an HTTP body that is not declared a packet
BODY_TIMEOUT = "body_timeout"  # an HTTP body that did not arrive whole in time
STORAGE_BUSY = "storage_busy"  # not queued: the receiver's queue is full (a long database lock)
UNKNOWN_TTN_DEVICE = "ttn_unknown_device"  # an uplink from a TTN end device no registered device is mapped to
TTN_DEVICE_MISMATCH = "ttn_device_mismatch"  # a TTN device's uplink carries another mpseal device's packet


class Reason:
    __slots__ = ("name", "http_status", "final", "meaning")

    def __init__(self, name, http_status, final, meaning):
        self.name, self.http_status, self.final, self.meaning = name, http_status, final, meaning


# HTTP status: 400 malformed, 403 not authentic, 409 authentic but refused
# (replay), 413 too big, 415 not a packet, 503 not stored.
REASONS = {r.name: r for r in (
    Reason(errors.TRUNCATED, 400, False, "shorter than a header and a tag"),
    Reason(errors.OVERSIZE, 413, True, "longer than the protocol's limit"),
    Reason(errors.BAD_VERSION, 400, False, "a protocol version this host does not speak"),
    Reason(errors.BAD_TYPE, 400, False, "a message type a board may not send"),
    Reason(errors.BAD_SEQ, 400, True, "sequence 0 on a reading, or a sequence on a resync request"),
    Reason(errors.BAD_LENGTH, 400, False, "the ciphertext is not whole AES blocks"),
    Reason(errors.UNKNOWN_DEVICE, 403, False, "no device has this id"),
    Reason(errors.UNKNOWN_EPOCH, 403, False, "the device has no key under this epoch"),
    Reason(errors.BAD_TAG, 403, False, "the tag does not verify: forged, corrupted or another key"),
    Reason(errors.REPLAY, 409, True, "this sequence number was already accepted"),
    Reason(errors.TOO_OLD, 409, True, "below the replay window"),
    Reason(errors.BAD_PADDING, 400, True, "authentic, but the plaintext padding is wrong"),
    Reason(errors.BAD_PAYLOAD, 400, True, "authentic, but the payload does not decode"),
    Reason(UNKNOWN_SENDER, 403, False, "SMS from a number the device may not send from"),
    Reason(SEQ_REUSED, 409, True, "the sequence number already holds a different reading"),
    Reason(STORAGE_ERROR, 503, False, "not stored: the database is unavailable"),
    Reason(NOT_BASE64, 400, False, "the SMS text is not a base64 packet"),
    Reason(BAD_CONTENT_TYPE, 415, False, "the HTTP body is not declared application/octet-stream"),
    Reason(BODY_TIMEOUT, 408, False, "the HTTP body did not arrive whole within the read timeout"),
    Reason(STORAGE_BUSY, 503, False, "not queued: the receiver's queue is full while storage waits"),
    Reason(UNKNOWN_TTN_DEVICE, 403, False, "a TTN uplink from an end device no device is mapped to ('mpseal devices set-ttn-id')"),
    Reason(TTN_DEVICE_MISMATCH, 403, False, "a TTN uplink carrying the packet of another device than the one mapped to it"),
)}

FINAL = frozenset(name for name, reason in REASONS.items() if reason.final)


def http_status(name):
    reason = REASONS.get(name)
    return reason.http_status if reason else 400
