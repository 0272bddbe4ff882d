"""Storage: the device registry, keys, replay windows, readings, commands and
counters behind one contract. Nothing outside this package runs SQL or sees a
database driver's exceptions; every backend raises the errors in model.py.

    from mpseal_host.storage import open_storage
    storage = open_storage("mpseal.sqlite")
"""
from mpseal_host.storage.model import (  # noqa: F401  (the package's public names)
    FORMAT_NAMES,
    KEY_CURRENT,
    KEY_PENDING,
    MAX_DEVICE_NAME,
    NO_DEVICE,
    Device,
    DeviceExists,
    NoSuchDevice,
    StorageError,
)
from mpseal_host.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

Storage = SQLiteStorage  # the embedded default backend


def open_storage(location, **options):
    """The backend for a database location: today a SQLite file path."""
    return SQLiteStorage(location, **options)
