# Every reason a packet is refused, by name: the host counts and logs
# `InvalidPacket.reason`, and its code, tests and docs name reasons through
# these constants. A board never imports this module: its code raises with the
# same literal strings (each interned name costs board RAM for good), and
# tests/test_protocol_vectors.py checks both lists agree.
# Caller mistakes (wrong key length, bad argument) stay ValueError/TypeError.
from mpseal.packet import InvalidPacket  # noqa: F401  (defined beside the code that raises it)

TRUNCATED = "truncated"
OVERSIZE = "oversize"
BAD_VERSION = "bad_version"
BAD_TYPE = "bad_type"
BAD_SEQ = "bad_seq"  # sequence 0 on a reading/ack/command, or not 0 on a resync message
BAD_LENGTH = "bad_length"
UNKNOWN_DEVICE = "unknown_device"
UNKNOWN_EPOCH = "unknown_epoch"
BAD_TAG = "bad_tag"
REPLAY = "replay"
TOO_OLD = "too_old"
BAD_PADDING = "bad_padding"
BAD_PAYLOAD = "bad_payload"
