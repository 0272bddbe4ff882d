"""Per-device status from the device's own reporting interval, and the
health fields of a device: what the page, /metrics and MQTT availability
all show, computed in one place.

The receiver never hears from a board between readings, so "is it alive"
is a guess from how often it usually reports:
- the interval is the last `set-interval` command that went out to the device
  (`configured`), else the median gap between its recent readings per
  sequence number (`estimated`; gaps of a queued backlog arriving in a burst
  are left out), else DEFAULT_INTERVAL_S (`default`, fewer than 2 readings);
- ok while the last reading is at most LATE_AFTER intervals (+ GRACE_S) old,
  late up to SILENT_AFTER intervals, then silent; `never` before the first.
The core functions are free of I/O; Fleet is the small shell that reads
storage and caches each estimate until the device sends something new.
"""
import struct
import time

from mpseal.control import CMD_SET_INTERVAL, CMD_UPDATE_OFFER
from mpseal_host.integrations.channels import MARKER_FIELDS, is_number
from mpseal_host.integrations.timerange import with_measured_at
from mpseal_host.ota import assigned_versions, update_status

DEFAULT_INTERVAL_S = 600.0  # what `silent` meant before: 10 minutes
MIN_INTERVAL_S = 1.0
BURST_GAP_S = 0.25  # gaps shorter than this are a backlog arriving, not the interval
ARRIVALS_CONSIDERED = 21  # 20 gaps
LATE_AFTER = 2.0  # intervals
SILENT_AFTER = 5.0  # intervals
GRACE_S = 10.0  # network and processing jitter, on top of the intervals

OK, LATE, SILENT, NEVER = "ok", "late", "silent", "never"
STATUSES = (OK, LATE, SILENT, NEVER)


def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def estimate_interval(arrivals):
    """arrivals: [(seq, received_at)] newest first -> seconds per reading, or
    None with fewer than two readings."""
    gaps = []
    for (seq, t), (older_seq, older_t) in zip(arrivals, arrivals[1:]):
        if seq > older_seq:
            gaps.append(max(0.0, t - older_t) / (seq - older_seq))
    if not gaps:
        return None
    spaced = [g for g in gaps if g >= BURST_GAP_S]
    return max(MIN_INTERVAL_S, _median(spaced if len(spaced) >= 3 else gaps))


def status(last_seen, interval, now):
    if last_seen is None:
        return NEVER
    age = now - last_seen
    if age <= LATE_AFTER * interval + GRACE_S:
        return OK
    if age <= SILENT_AFTER * interval + GRACE_S:
        return LATE
    return SILENT


def silent_after(interval):
    """Seconds without a reading after which a device counts as silent (offline)."""
    return SILENT_AFTER * interval + GRACE_S


def health(device, latest):
    """The health fields the board sends today (values of its readings), and
    the receiver's own view (transport, rejections). Missing ones are None."""
    value = latest.get("value") if latest else None
    value = value if isinstance(value, dict) else {}
    version = value.get("version", value.get("fw", value.get("app_release")))
    return {
        "battery": value.get("battery") if is_number(value.get("battery")) else None,
        "signal": value.get("rssi") if is_number(value.get("rssi")) else None,
        "version": version if isinstance(version, (str, int, float)) and not isinstance(version, bool) else None,
        "transport": device.last_transport,
        "rejected": device.rejected,
    }


def is_synthetic(latest):
    """True when the board marks its sensor as made up (a `synthetic` value)."""
    value = latest.get("value") if latest else None
    return isinstance(value, dict) and any(bool(value.get(name)) for name in MARKER_FIELDS)


class Fleet:
    """Status and health of every device, read from storage."""

    def __init__(self, storage, clock=time.time):
        self.storage = storage
        self.clock = clock
        self._estimates = {}  # device id -> (last_seq, estimate or None)

    def _configured(self):
        configured = {}
        for device_id, argument in self.storage.last_sent_commands(CMD_SET_INTERVAL).items():
            if len(argument) == 4:
                configured[device_id] = float(struct.unpack(">I", argument)[0])
        return configured

    def interval(self, device, configured):
        """(seconds, source) for one device."""
        if device.id in configured:
            return configured[device.id], "configured"
        cached = self._estimates.get(device.id)
        if cached is None or cached[0] != device.last_seq:
            cached = (device.last_seq, estimate_interval(self.storage.arrival_times(device.id, ARRIVALS_CONSIDERED)))
            self._estimates[device.id] = cached
        if cached[1] is None:
            return DEFAULT_INTERVAL_S, "default"
        return cached[1], "estimated"

    def devices(self):
        """[dict] per device: its public fields, latest reading (with
        measured_at), status, interval, health, synthetic marker, rejections."""
        storage = self.storage
        now = self.clock()
        latest = storage.latest_readings()
        rejected = storage.rejection_counts()[1]
        configured = self._configured()
        offers = storage.latest_commands(CMD_UPDATE_OFFER)
        assigned = assigned_versions(storage.ota_plan())
        views = []
        for device in storage.list_devices():
            reading = with_measured_at(latest.get(device.name))
            interval, source = self.interval(device, configured)
            info = device.public()
            info["latest"] = reading
            info["rejected_by_reason"] = rejected.get(device.name, {})
            info["status"] = status(device.last_seen, interval, now)
            info["interval_s"] = round(interval, 3)
            info["interval_source"] = source
            info["silent_after_s"] = round(silent_after(interval), 3)
            info["health"] = health(device, reading)
            info["synthetic"] = is_synthetic(reading)
            info["ota"] = update_status(reading, offers.get(device.id))  # offered vs running (docs/ota.md)
            info["ota"]["assigned"] = assigned.get(device.name)
            views.append(info)
        live = {view["id"] for view in views}
        for device_id in list(self._estimates):
            if device_id not in live:
                del self._estimates[device_id]
        return views
