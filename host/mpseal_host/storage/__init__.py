"""Storage: the device registry, keys, replay windows, readings, commands and
counters behind one contract. Nothing outside this package runs SQL or sees a
database driver's exceptions; every backend raises the errors in model.py.

    from mpseal_host.storage import open_storage
    storage = open_storage("mpseal.sqlite")
"""
from mpseal_host.storage.model import *  # noqa: F401,F403  (the records and errors: model.__all__)
from mpseal_host.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

Storage = SQLiteStorage  # the embedded default backend
DEFAULT_DB = "mpseal.sqlite"  # in the working folder, as `mpseal receive` and every command take it


def open_storage(location, **options):
    """The backend for a database location: today a SQLite file path."""
    return SQLiteStorage(location, **options)
