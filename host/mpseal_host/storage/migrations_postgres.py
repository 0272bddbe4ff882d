"""Versioned schema of the PostgreSQL backend. Same rules as the SQLite one
(migrations_sqlite.py): a new database gets the latest schema at once, an
older one runs each step up, all under one advisory lock so N receivers
starting together migrate once. `meta.schema_version` says where it is.

Version 1: this release. Readings are partitioned by month on received_at
(unix seconds), one partition per calendar month (UTC), created ahead of
time by the writers (postgres.py); retention drops whole partitions.
Version 2: api_tokens (`mpseal token`, the receiver's exposed API).
Version 3: a reading's radio link (rssi, snr: LoRaWAN's best gateway; on
the partitioned parent, so every month's partition has them) and a device's
TTN end device id (`mpseal ttn`'s mapping).
"""
MIGRATION_LOCK = 4740_0001  # pg_advisory_xact_lock key: schema changes
SCHEMA_VERSION = 3

# Only the SHA-256 of a token is kept (a token is 32 random bytes).
API_TOKENS = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name text PRIMARY KEY,
    digest bytea NOT NULL UNIQUE,
    scope text NOT NULL CHECK (scope IN ('read', 'admin')),
    created_at float8 NOT NULL
);
"""

SCHEMA = """
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE devices (
    id bigint PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    name text NOT NULL UNIQUE,
    created_at float8 NOT NULL,
    replay_window bytea,
    last_seq bigint NOT NULL DEFAULT 0,
    last_seen float8,
    last_transport text,
    host_seq bigint NOT NULL DEFAULT 0,
    allowed_numbers jsonb NOT NULL DEFAULT '[]',
    received bigint NOT NULL DEFAULT 0,
    stored bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0
);
CREATE TABLE device_keys (
    device_id bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch smallint NOT NULL CHECK (epoch BETWEEN 0 AND 255),
    master_key bytea NOT NULL,
    state text NOT NULL CHECK (state IN ('current', 'pending')),
    created_at float8 NOT NULL,
    PRIMARY KEY (device_id, epoch),
    UNIQUE (device_id, state)
);
-- No foreign key and no unique (device, seq): a partitioned table's unique
-- keys must contain the partition key. What keeps a seq stored once is the
-- device row lock every ingest batch takes first (postgres.py); remove_device
-- deletes the readings itself.
CREATE TABLE readings (
    device_id bigint NOT NULL,
    seq bigint NOT NULL,
    received_at float8 NOT NULL,
    transport text NOT NULL,
    format smallint NOT NULL,
    payload bytea NOT NULL,
    value jsonb NOT NULL,
    ack bytea
) PARTITION BY RANGE (received_at);
CREATE INDEX readings_device_seq ON readings (device_id, seq);
CREATE TABLE rejections (
    device_id bigint NOT NULL,
    reason text NOT NULL,
    count bigint NOT NULL,
    last_at float8 NOT NULL,
    PRIMARY KEY (device_id, reason)
);
CREATE TABLE device_events (
    device_id bigint NOT NULL,
    event text NOT NULL,
    count bigint NOT NULL,
    last_at float8 NOT NULL,
    PRIMARY KEY (device_id, event)
);
CREATE TABLE commands (
    id bigserial PRIMARY KEY,
    device_id bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    opcode smallint NOT NULL,
    argument bytea NOT NULL,
    created_at float8 NOT NULL,
    sent_at float8,
    sent_host_seq bigint,
    acked_device_seq bigint
);
CREATE INDEX commands_unsent ON commands (device_id) WHERE sent_at IS NULL;
CREATE INDEX commands_by_ack ON commands (device_id, acked_device_seq) WHERE acked_device_seq IS NOT NULL;
-- Taken by every write: the live page's change token.
CREATE SEQUENCE changes;
""" + API_TOKENS

RADIO_AND_TTN = """
ALTER TABLE readings ADD COLUMN IF NOT EXISTS rssi real, ADD COLUMN IF NOT EXISTS snr real;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS ttn_id text;
CREATE UNIQUE INDEX IF NOT EXISTS devices_ttn_id ON devices (ttn_id);
"""


def _v1_to_v2(conn):
    conn.execute(API_TOKENS)


def _v2_to_v3(conn):
    conn.execute(RADIO_AND_TTN)


STEPS = {2: _v1_to_v2, 3: _v2_to_v3}  # target version -> function(cursor), the step from the version before


def current_version(conn):
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn, location, newer_schema):
    """Brings the database to SCHEMA_VERSION; conn is in autocommit mode."""
    if current_version(conn) == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = current_version(conn)
        if found > SCHEMA_VERSION:
            raise newer_schema(location, found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            return
        if found == 0:
            conn.execute(SCHEMA)
            conn.execute(RADIO_AND_TTN)
        else:
            for target in range(found + 1, SCHEMA_VERSION + 1):
                STEPS[target](conn)
        conn.execute(
            "INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
