"""Versioned schema of the SQLite backend. A new database gets the latest
schema in one go; an older one runs each step from its version up, each in
its own transaction, under the write lock (two processes opening an old file
at once migrate it once). `meta.schema_version` says where a file is.

Version 1: the first release (readings WITHOUT ROWID keyed by (device, seq),
payload decoded on every read). Version 2: decoded values stored (JSON),
the ack a reading got, readings on an increasing rowid with a (device, seq)
unique index, a per-device change counter, partial indexes for commands,
device_events. Version 3: api_tokens (`mpseal token`, the receiver's
exposed API). Version 4: the radio link of a reading (rssi, snr: LoRaWAN's
best gateway) and a device's TTN end device id (`mpseal ttn`'s mapping).
"""
import sqlite3

from mpseal_host.storage.model import newer_schema, value_json_from_payload

SCHEMA_VERSION = 4

DEVICES = """
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,                  -- the protocol's u32 device id
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    replay_window BLOB,                      -- mpseal.ReplayWindow.to_bytes()
    last_seq INTEGER NOT NULL DEFAULT 0,     -- highest device seq stored
    last_seen REAL,
    last_transport TEXT,
    host_seq INTEGER NOT NULL DEFAULT 0,     -- last host->device seq used
    allowed_numbers TEXT NOT NULL DEFAULT '[]',  -- JSON list; [] = any SMS sender
    received INTEGER NOT NULL DEFAULT 0,
    stored INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0       -- change counter (contract.py)
);
-- At most one 'current' and one 'pending' key per device: the host accepts
-- both until the first packet under the pending epoch promotes it.
CREATE TABLE device_keys (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL CHECK (epoch BETWEEN 0 AND 255),
    master_key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('current', 'pending')),
    created_at REAL NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE UNIQUE INDEX one_key_per_state ON device_keys (device_id, state);
CREATE TABLE rejections (
    device_id INTEGER NOT NULL,              -- NO_DEVICE (-1) when none is registered
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (device_id, reason)
);
-- What happened to a device that is no refusal (re-acks over a budget,
-- resync requests, ...): the downlink pipeline's Batch.events.
CREATE TABLE device_events (
    device_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (device_id, event)
);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    opcode INTEGER NOT NULL,
    argument BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    sent_host_seq INTEGER,
    acked_device_seq INTEGER                 -- the device seq whose ack carried it
);
"""

# Readings: new rows take the next rowid, so the table grows at its end; the
# (device, seq) index is ~20 bytes an entry, so a device's recent seqs share
# one leaf and a batch dirties one index page per device in it. The unique
# index is also the second line of defence behind the replay window.
READINGS = """
CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    received_at REAL NOT NULL,
    transport TEXT NOT NULL,
    format INTEGER NOT NULL,
    payload BLOB NOT NULL,                   -- decrypted payload (duplicates are compared on it)
    value TEXT NOT NULL,                     -- JSON of the decoded payload, decoded once at ingest
    ack BLOB                                 -- the sealed ack it got, when kept
);
CREATE UNIQUE INDEX readings_device_seq ON readings (device_id, seq);
"""

# Only unsent commands are ever looked for by state: a partial index stays as
# small as the queue, however many commands were ever sent.
COMMAND_INDEXES = """
CREATE INDEX commands_unsent ON commands (device_id) WHERE sent_at IS NULL;
CREATE INDEX commands_by_ack ON commands (device_id, acked_device_seq) WHERE acked_device_seq IS NOT NULL;
"""


# API tokens (`mpseal token`): only the SHA-256 of a token is kept; a token
# is 32 random bytes, so a plain hash is as good as a slow one.
API_TOKENS = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    created_at REAL NOT NULL
);
"""


# Version 4: columns added to the tables above (so every older file gets the
# same statements), nullable: readings from links without a radio report and
# devices that are not on TTN leave them NULL.
RADIO_AND_TTN = """
ALTER TABLE readings ADD COLUMN rssi REAL;
ALTER TABLE readings ADD COLUMN snr REAL;
ALTER TABLE devices ADD COLUMN ttn_id TEXT;
CREATE UNIQUE INDEX devices_ttn_id ON devices (ttn_id);
"""


def _v1_to_v2(db):
    columns = [row[1] for row in db.execute("PRAGMA table_info(readings)")]
    ack = "ack" if "ack" in columns else "NULL"  # a branch build may have added it already
    db.execute("ALTER TABLE devices ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE readings RENAME TO readings_v1")
    db.executescript_in_tx(READINGS)
    db.create_function("mpseal_value_json", 2, value_json_from_payload, deterministic=True)
    db.execute(
        "INSERT INTO readings (device_id, seq, received_at, transport, format, payload, value, ack)"
        " SELECT device_id, seq, received_at, transport, format, payload, mpseal_value_json(format, payload), %s"
        " FROM readings_v1 ORDER BY received_at, device_id, seq" % ack
    )
    db.execute("DROP TABLE readings_v1")
    db.execute(
        "CREATE TABLE IF NOT EXISTS device_events (device_id INTEGER NOT NULL, event TEXT NOT NULL,"
        " count INTEGER NOT NULL, last_at REAL NOT NULL, PRIMARY KEY (device_id, event))"
    )
    db.execute("DROP INDEX IF EXISTS commands_unsent")
    db.executescript_in_tx(COMMAND_INDEXES)


def _v2_to_v3(db):
    db.executescript_in_tx(API_TOKENS)  # IF NOT EXISTS: a receiver-branch build may have made it


def _v3_to_v4(db):
    db.executescript_in_tx(RADIO_AND_TTN)


STEPS = {2: _v1_to_v2, 3: _v2_to_v3, 4: _v3_to_v4}  # target version -> step from the one before


class _Tx:
    """A connection whose multi-statement scripts stay inside the open
    transaction (sqlite3's executescript would COMMIT first)."""

    def __init__(self, db):
        self.db = db

    def execute(self, *args):
        return self.db.execute(*args)

    def create_function(self, *args, **kw):
        return self.db.create_function(*args, **kw)

    def executescript_in_tx(self, script):
        statement = ""
        for line in script.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self.db.execute(statement)
                statement = ""


def current_version(db):
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a new file
        return 0
    return 0 if row is None else int(row[0])


def migrate(db, location):
    """Brings the database to SCHEMA_VERSION (creates it when empty)."""
    if current_version(db) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(db)  # again, under the lock: another process may have done it
        if found > SCHEMA_VERSION:
            raise newer_schema(location, found, SCHEMA_VERSION)
        tx = _Tx(db)
        if found == 0:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            tx.executescript_in_tx(DEVICES + READINGS + COMMAND_INDEXES + API_TOKENS + RADIO_AND_TTN)
        else:
            for target in range(found + 1, SCHEMA_VERSION + 1):
                STEPS[target](tx)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
