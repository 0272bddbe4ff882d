"""What every storage backend stores and raises: the records and typed errors
of the storage contract. No SQL and no driver here; backends (sqlite.py, ...)
translate their drivers' errors into these."""
import json
import os
from collections import namedtuple
from dataclasses import dataclass, field

from mpseal.keys import MASTER_KEY_SIZE
from mpseal.packet import MAX_SEQ
from mpseal.payload import FORMAT_JSON, FORMAT_RAW, FORMAT_VALUES, decode
from mpseal_host.errors import MpsealError

__all__ = ["FORMAT_NAMES", "KEY_CURRENT", "KEY_PENDING", "MAX_DEVICE_NAME", "NO_DEVICE", "Device", "DeviceExists",
           "NoSuchDevice", "StorageBusy", "StorageError", "StorageUnavailable", "NewReading", "check_device_name"]

NO_DEVICE = -1  # rejections that name no registered device (unparsable, unknown id)
FORMAT_NAMES = {FORMAT_RAW: "raw", FORMAT_JSON: "json", FORMAT_VALUES: "values"}
KEY_CURRENT = "current"
KEY_PENDING = "pending"
MAX_DEVICE_NAME = 64


class StorageError(MpsealError):
    """A registry operation the caller asked for cannot be done (the message says why)."""


class StorageUnavailable(StorageError):
    """The database cannot be opened or used (path, permissions, not a
    database, locked, disk full, connection lost, a newer schema): nothing of
    the operation was stored. Backends turn their driver's errors into this;
    nobody outside the storage package sees a driver exception."""



class StorageBusy(StorageUnavailable):
    """Another process holds the write lock past the busy timeout: nothing
    was written; try again (the receiver's writer waits and retries)."""


class NoSuchDevice(StorageError):
    pass


class DeviceExists(StorageError):
    pass


@dataclass
class Device:
    id: int
    name: str
    epoch: int  # epoch of the current key
    master_key: bytes = field(repr=False)
    pending_epoch: object = None  # int while a rotation waits for its first packet
    created_at: float = 0.0
    replay_window: bytes = b""
    last_seq: int = 0
    last_seen: object = None
    last_transport: object = None
    host_seq: int = 0
    allowed_numbers: list = field(default_factory=list)
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    version: int = 0  # change counter: rises with every write touching the device
    ttn_id: object = None  # The Things Network end device id (str), mapped by `mpseal ttn`; None = not on TTN

    def public(self):
        """The fields an API or a listing may show (no keys)."""
        return {
            "id": self.id,
            "name": self.name,
            "epoch": self.epoch,
            "pending_epoch": self.pending_epoch,
            "last_seq": self.last_seq,
            "last_seen": self.last_seen,
            "last_transport": self.last_transport,
            "host_seq": self.host_seq,
            "allowed_numbers": self.allowed_numbers,
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "ttn_id": self.ttn_id,
        }


# One reading for write_batch, decoded once at ingest: `value` is the JSON
# text of what the API shows (a dict for values payloads, hex for raw bytes),
# `payload` the decrypted bytes (duplicates are compared on them), `ack` the
# sealed ack it got when the pipeline keeps one (None otherwise); `rssi`
# (dBm) and `snr` (dB): the radio link it came over, when the carrier says
# (LoRaWAN: TTN's best gateway), else None.
NewReading = namedtuple("NewReading", "device_id seq received_at transport format payload value ack rssi snr", defaults=(None, None))


def value_json(value):
    """The stored form of a decoded payload value."""
    return json.dumps(value.hex() if isinstance(value, (bytes, bytearray)) else value, separators=(",", ":"))


def value_json_from_payload(fmt, payload):
    """For migrating readings stored before values were: decode the payload once."""
    return value_json(decode(bytes(payload))[1])


def reading_dict(seq, received_at, transport, fmt, value, rssi=None, snr=None):
    reading = {
        "seq": seq,
        "received_at": received_at,
        "transport": transport,
        "format": FORMAT_NAMES.get(fmt, fmt),
        "value": json.loads(value),
    }
    if rssi is not None:  # only readings that came over a radio link that reports it (LoRaWAN)
        reading["rssi"] = rssi
        reading["snr"] = snr
    return reading


# The Things Stack's end device id rule: 2..36 lowercase letters, digits and
# single dashes, starting and ending with a letter or digit.
MAX_TTN_ID = 36


def check_ttn_id(ttn_id):
    if ttn_id is None:
        return
    ok = isinstance(ttn_id, str) and 2 <= len(ttn_id) <= MAX_TTN_ID and "--" not in ttn_id
    ok = ok and all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in ttn_id)
    if not ok or ttn_id[0] == "-" or ttn_id[-1] == "-":
        raise StorageError("a TTN device id is 2..%d lowercase letters, digits and single dashes, "
                           "starting and ending with a letter or digit (got %r)" % (MAX_TTN_ID, ttn_id))


def device_name_problem(name):
    """Device names appear in URLs, file names and logs: 1..MAX_DEVICE_NAME
    ASCII letters, digits, '-', '_' or '.', starting with a letter or digit,
    no '..' (so never '.', '..' or anything path-like). Returns an error
    message, or None when the name is fine."""
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_DEVICE_NAME
        or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
        or not name[0].isalnum()
        or ".." in name
    ):
        return (
            "a device name is 1..%d ASCII letters, digits, '-', '_' or '.', starting with a letter or digit,"
            " without '..' (got %r)" % (MAX_DEVICE_NAME, name)
        )
    return None


def check_device_name(name):
    problem = device_name_problem(name)
    if problem:
        raise StorageError(problem)


def check_device_id(device_id):
    if not isinstance(device_id, int) or not 0 <= device_id <= MAX_SEQ:
        raise StorageError("a device id is 0..2**32-1")


def check_key(key, epoch):
    if not isinstance(key, (bytes, bytearray)) or len(key) != MASTER_KEY_SIZE:
        raise StorageError("a master key is %d bytes (64 hex digits)" % MASTER_KEY_SIZE)
    if not isinstance(epoch, int) or not 0 <= epoch <= 255:
        raise StorageError("a key epoch is 0..255")


def new_key():
    return os.urandom(MASTER_KEY_SIZE)


def no_such_device(name_or_id):
    return NoSuchDevice("no device %r (see 'mpseal devices list')" % (name_or_id,))


def device_exists(name):
    return DeviceExists("device %r exists already (remove it first or pick another name)" % name)


def newer_schema(location, found, known):
    return StorageUnavailable(
        "database %s has schema version %s, newer than this mpseal knows (%d): upgrade mpseal" % (location, found, known)
    )


def summarize_rejections(rows):
    """rows of (device name or None, reason, count) -> rejection_counts() shape."""
    totals = {}
    per_device = {}
    for name, reason, count in rows:
        name = name or "(unregistered)"
        totals[reason] = totals.get(reason, 0) + count
        per_device.setdefault(name, {})
        per_device[name][reason] = per_device[name].get(reason, 0) + count
    return totals, per_device


def stats_from(sums, totals, per_device):
    """sums: (devices, received, stored, duplicates) -> the stats() dict."""
    return {
        "devices": sums[0],
        "received": sums[1] + sum(per_device.get("(unregistered)", {}).values()),
        "stored": sums[2],
        "duplicates": sums[3],
        "rejected": sum(totals.values()),
        "rejected_by_reason": totals,
        "rejected_by_device": per_device,
    }
