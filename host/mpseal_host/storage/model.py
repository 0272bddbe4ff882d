"""What every storage backend stores and raises: the records and typed errors
of the storage contract. No SQL and no driver here; backends (sqlite.py, ...)
translate their drivers' errors into these."""
from dataclasses import dataclass, field

from mpseal.payload import FORMAT_JSON, FORMAT_RAW, FORMAT_VALUES
from mpseal_host.errors import MpsealError

__all__ = ["FORMAT_NAMES", "KEY_CURRENT", "KEY_PENDING", "MAX_DEVICE_NAME", "NO_DEVICE", "Device", "DeviceExists",
           "NoSuchDevice", "StorageBusy", "StorageError", "StorageUnavailable", "check_device_name"]

NO_DEVICE = -1  # rejections that name no registered device (unparsable, unknown id)
FORMAT_NAMES = {FORMAT_RAW: "raw", FORMAT_JSON: "json", FORMAT_VALUES: "values"}
KEY_CURRENT = "current"
KEY_PENDING = "pending"
MAX_DEVICE_NAME = 64


class StorageError(MpsealError):
    """A registry operation the caller asked for cannot be done (the message says why)."""


class StorageUnavailable(StorageError):
    """The database cannot be opened or used at all (path, permissions, not a database, locked)."""


class NoSuchDevice(StorageError):
    pass


class DeviceExists(StorageError):
    pass


class StorageBusy(StorageUnavailable):
    """Another process holds the write lock past the busy timeout: nothing
    was written; try again (the receiver's writer waits and retries)."""


def check_device_name(name):
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
        }
