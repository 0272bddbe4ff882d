# One error type for every reason a packet is refused (Fernet's InvalidToken
# habit): callers count and log `reason`, never branch on message text.
# Caller mistakes (wrong key length, bad argument) stay ValueError/TypeError.

TRUNCATED = "truncated"
OVERSIZE = "oversize"
BAD_VERSION = "bad_version"
BAD_TYPE = "bad_type"
BAD_LENGTH = "bad_length"
UNKNOWN_DEVICE = "unknown_device"
UNKNOWN_EPOCH = "unknown_epoch"
BAD_TAG = "bad_tag"
REPLAY = "replay"
TOO_OLD = "too_old"
BAD_PADDING = "bad_padding"
BAD_PAYLOAD = "bad_payload"


class InvalidPacket(ValueError):
    """A packet that must not be trusted; `reason` is one of the constants above."""

    def __init__(self, reason, detail=None):
        super().__init__(reason if detail is None else reason + ": " + detail)
        self.reason = reason
