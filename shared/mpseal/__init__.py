# mpseal: sealed telemetry packets, the same files on ESP8266 MicroPython and
# CPython. See docs/protocol.md for the byte layout and the steps.
from mpseal.keys import TO_DEVICE, TO_HOST, DeviceKeys
from mpseal.packet import (
    TYPE_ACK,
    TYPE_COMMAND,
    TYPE_READING,
    VERSION_COMPACT,
    VERSION_STANDARD,
    Header,
    InvalidPacket,
    parse_header,
    seal,
    unseal,
)
from mpseal.replay_window import ReplayWindow

__version__ = "0.1.0"
