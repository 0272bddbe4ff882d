"""Times of a reading, and the `from`/`to` bounds users give.

A reading has two times:
- `received_at`: when the receiver stored it (the host's clock). Readings a
  board queued during an outage arrive together and share nearly one arrival
  time.
- `measured_at`: when the board measured it. The board has no wall clock (an
  ESP8266 without NTP), so this is `received_at - age` when the reading
  carries the protocol's `age` channel (seconds it waited before sending), and
  `received_at` otherwise; `time_source` says which ("age" or "arrival").
  Today's firmware seals a reading once, at measurement, and resends the same
  bytes from its queue (so a resend is recognised as a duplicate): it cannot
  add the waiting time afterwards, so its readings say "arrival". See
  docs/integrations.md.

Time ranges select by arrival (`received_at`), the one time every reading has.
"""
import datetime
import math

from mpseal_host.errors import MpsealError
from mpseal_host.integrations.channels import is_number

TIME_SOURCE_AGE = "age"
TIME_SOURCE_ARRIVAL = "arrival"


class BadTime(MpsealError, ValueError):
    """A `from`/`to` that is neither ISO 8601 nor a Unix time."""


def parse_time(text):
    """'2026-12-01T08:00:00Z', '2026-12-01 08:00+01:00', '2026-12-01' (no
    offset = UTC) or Unix seconds '1795312247.5' -> Unix seconds (float)."""
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value) or not 0 <= value < 2**33:
            raise BadTime("time %r is out of range" % text)
        return value
    try:
        parsed = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
    except ValueError:
        raise BadTime("time %r is neither ISO 8601 (2026-12-01T08:00:00Z) nor Unix seconds" % text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def iso(t):
    """Unix seconds -> '2026-12-01T08:00:00.123Z' (UTC); None stays None."""
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measured(reading):
    """(measured_at, time_source) of a reading dict from storage."""
    value = reading.get("value")
    age = value.get("age") if isinstance(value, dict) else None
    if is_number(age) and math.isfinite(age) and 0 <= age < 10 * 365 * 86400:
        return reading["received_at"] - age, TIME_SOURCE_AGE
    return reading["received_at"], TIME_SOURCE_ARRIVAL


def with_measured_at(reading):
    """The reading dict with `measured_at` and `time_source` added (in place)."""
    if reading is not None:
        reading["measured_at"], reading["time_source"] = measured(reading)
    return reading
