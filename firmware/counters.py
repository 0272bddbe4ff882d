# What the board has done, for the console (`STATS {...}` lines that the demo
# and tests read). rtc_memory.py keeps them across deep sleeps.
import json

NAMES = (
    "readings",  # readings measured and sealed
    "sent",  # transmissions (a reading sent twice counts twice)
    "acked",  # readings the host acknowledged
    "queued",  # readings put into the flash queue
    "dropped",  # queued readings dropped because the queue was full
    "rejected",  # readings the host refused for good (HTTP 4xx; over UDP: never acked while later ones were), dropped
    "bad_replies",  # replies skipped: not verifying (forged, corrupt, wrong direction), from another address, malformed commands
    "replayed",  # replies seen before (an ack again: still acks, runs nothing), old resync answers
    "stale_acks",  # authentic acks naming another reading (late reply to a retry)
    "commands",  # commands executed
    "commands_refused",  # commands ignored: replayed after a reboot, unknown, malformed or out of bounds
    "unsequenced",  # readings not taken: no sequence number (lost store until resync, flash full, 2**32-1 used)
    "sensor_errors",  # sensor reads that failed
    "errors",  # cycles that ended in an unexpected exception, commands that could not be applied (printed, then carried on)
)


class Counters:
    def __init__(self):
        for name in NAMES:
            setattr(self, name, 0)

    def line(self, values):
        """Prints the `STATS {...}` console line: every counter plus `values`
        (a dict of figures the counters do not hold), which it fills in.
        Printed in two pieces rather than built as one string: the copy
        would be a ~350-byte block on a heap with little room left."""
        for name in NAMES:
            values[name] = getattr(self, name)
        print("STATS", json.dumps(values))
