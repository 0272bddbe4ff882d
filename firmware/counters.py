# What the board has done, for the console (`STATS {...}` lines that the demo
# and tests read) and for RTC memory, which keeps them, together with the next
# sequence number, across deep sleeps (not across power cuts: RTC memory is
# cleared then, and the flash reservation in seqstore takes over).
import json
import struct

import hw

NAMES = (
    "readings",  # readings measured and sealed
    "sent",  # transmissions (a reading sent twice counts twice)
    "acked",  # readings the host acknowledged
    "queued",  # readings put into the flash queue
    "dropped",  # queued readings dropped because the queue was full
    "rejected",  # readings the host refused for good (HTTP 4xx), dropped
    "bad_replies",  # replies that failed to verify (forged, corrupt, wrong direction)
    "replayed",  # replies refused as replays (host sequence number seen before)
    "stale_acks",  # authentic acks naming another reading (late reply to a retry)
    "commands",  # commands executed
    "commands_refused",  # commands ignored: replayed after a reboot, or unknown
    "sensor_errors",  # sensor reads that failed
    "errors",  # cycles that ended in an unexpected exception (printed, then carried on)
)
_RTC_MAGIC = b"mps1"
_RTC_FORMAT = ">4sII%dI" % len(NAMES)  # magic | device id | next seq | counters


class Counters:
    def __init__(self):
        for name in NAMES:
            setattr(self, name, 0)

    def line(self, extra):
        """The `STATS {...}` console line: every counter plus `extra` (a dict
        of figures the counters do not hold), which it fills in."""
        for name in NAMES:
            extra[name] = getattr(self, name)
        return "STATS " + json.dumps(extra)

    def save_rtc(self, device_id, next_seq):
        values = [getattr(self, name) & 0xFFFFFFFF for name in NAMES]
        hw.RTC().memory(struct.pack(_RTC_FORMAT, _RTC_MAGIC, device_id, next_seq, *values))

    def load_rtc(self, device_id):
        """After a deep-sleep wake: restores the counters and returns the next
        sequence number kept in RTC memory; None when there is nothing valid
        (power-on, or memory from another device id)."""
        if hw.reset_cause() != hw.DEEPSLEEP_RESET:
            return None
        raw = hw.RTC().memory()
        if len(raw) != struct.calcsize(_RTC_FORMAT):
            return None
        fields = struct.unpack(_RTC_FORMAT, raw)
        if fields[0] != _RTC_MAGIC or fields[1] != device_id:
            return None
        for i in range(len(NAMES)):
            setattr(self, NAMES[i], fields[3 + i])
        return fields[2]
