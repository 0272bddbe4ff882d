"""Storage: the device registry, keys, replay windows, readings, commands and
counters behind one contract (contract.py). Nothing outside this package runs
SQL or sees a database driver's exceptions; every backend raises the errors
in model.py.

    from mpseal_host.storage import open_storage
    storage = open_storage("mpseal.sqlite")              # SQLite file (the default)
    storage = open_storage("postgresql://user@host/db")  # PostgreSQL (N receivers)

Which location a command uses (--db, MPSEAL_DB, mpseal.toml, the data
directory) is decided in mpseal_host.settings, not here.
"""
from mpseal_host.storage.contract import Storage as StorageContract  # noqa: F401
from mpseal_host.storage.model import *  # noqa: F401,F403  (the records and errors: model.__all__)
from mpseal_host.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

Storage = SQLiteStorage  # the embedded default backend
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location):
    return str(location).startswith(POSTGRES_SCHEMES)


def open_storage(location, serving=False, **options):
    """The backend for a database location: a postgresql:// URL or a SQLite
    file path. `serving`: a long-running receiver (background upkeep)."""
    location = str(location)
    if is_postgres(location):
        from mpseal_host.storage.postgres import PostgresStorage  # psycopg loads only when used

        return PostgresStorage(location, serving=serving, **options)
    return SQLiteStorage(location, serving=serving, **options)
