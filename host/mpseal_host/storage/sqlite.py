"""The SQLite implementation of the storage contract (the embedded default): device registry, keys, readings, counters,
queued downlink commands. One file, mode 0600, WAL; see docs/receiver.md.

Several processes may share the file (receiver, sms-ingest, the CLI). Writes
that depend on what was read (ingest batches, host sequence numbers) run in
`BEGIN IMMEDIATE`, which takes SQLite's single write lock first.
"""
import json
import logging
import os
import sqlite3
import stat
import time
from contextlib import contextmanager

from mpseal.control import CMD_ROTATE_KEY
from mpseal.keys import MASTER_KEY_SIZE
from mpseal.packet import MAX_SEQ
from mpseal.payload import decode
from mpseal_host.storage.model import (
    FORMAT_NAMES,
    KEY_CURRENT,
    KEY_PENDING,
    MAX_DEVICE_NAME,
    NO_DEVICE,
    Device,
    DeviceExists,
    NoSuchDevice,
    StorageBusy,
    StorageError,
    StorageUnavailable,
    check_device_name,
)

log = logging.getLogger("mpseal.storage")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
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
    rejected INTEGER NOT NULL DEFAULT 0
);
-- At most one 'current' and one 'pending' key per device: the host accepts
-- both until the first packet under the pending epoch promotes it.
CREATE TABLE IF NOT EXISTS device_keys (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL CHECK (epoch BETWEEN 0 AND 255),
    master_key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('current', 'pending')),
    created_at REAL NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_key_per_state ON device_keys (device_id, state);
-- Keyed by (device, seq), no other index: each batch then dirties about one
-- leaf page per device, not three (rowid table + two indexes), which is what
-- a batch commit costs. A seq is stored once, whatever the replay window says.
CREATE TABLE IF NOT EXISTS readings (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    received_at REAL NOT NULL,
    transport TEXT NOT NULL,
    format INTEGER NOT NULL,
    payload BLOB NOT NULL,                   -- decrypted payload (mpseal.payload); decoded on read
    ack BLOB,                                -- the sealed ack it got: a duplicate gets these same bytes
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
-- What happened to a device that is no refusal: re-acks over the budget,
-- resync requests by reason, acks that could not be sealed (pipeline.py).
CREATE TABLE IF NOT EXISTS device_events (
    device_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (device_id, event)
);
CREATE TABLE IF NOT EXISTS rejections (
    device_id INTEGER NOT NULL,              -- NO_DEVICE (-1) when none is registered
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (device_id, reason)
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    opcode INTEGER NOT NULL,
    argument BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    sent_host_seq INTEGER,
    acked_device_seq INTEGER                 -- the device seq whose ack carried it
);
CREATE INDEX IF NOT EXISTS commands_unsent ON commands (device_id, sent_at);
-- API tokens (`mpseal token`): only the SHA-256 of a token is kept; a token
-- is 32 random bytes, so a plain hash is as good as a slow one.
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    created_at REAL NOT NULL
);
"""


COUNT_REJECTIONS = (
    "INSERT INTO rejections VALUES (?, ?, ?, ?) ON CONFLICT (device_id, reason)"
    " DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at"
)
COUNT_EVENTS = (
    "INSERT INTO device_events VALUES (?, ?, ?, ?) ON CONFLICT (device_id, event)"
    " DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at"
)
# The host->device counter is reported from here on (stats, the page): acks
# use one per reading stored for the first time, so this is years away.
HOST_SEQ_WARN = MAX_SEQ - (1 << 24)


def _create_private(path):
    """Creates the file 0600 before SQLite opens it (SQLite gives its -wal and
    -shm files the mode of the database file)."""
    if path != ":memory:" and not os.path.exists(path):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def _make_private(path):
    """An existing database that others may read (it holds every device key)
    is made 0600, or refused when that is impossible (not our file). Called
    once SQLite has opened it: a path that is no database is left alone."""
    if path == ":memory:":
        return
    for name in (path, path + "-wal", path + "-shm"):
        try:
            info = os.stat(name)
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and mode & 0o077:
            try:
                os.chmod(name, 0o600)
            except OSError as exc:
                raise StorageUnavailable(
                    "%s is mode %04o (other users can read the device keys) and cannot be made 0600: %s"
                    % (name, mode, exc.strerror or exc))
            log.warning("%s was mode %04o (device keys readable by other users); it is 0600 now", name, mode)


def _is_busy(exc):
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _reading(seq, received_at, transport, fmt, payload):
    # Only payloads that decoded are stored, so this cannot fail.
    value = decode(bytes(payload))[1]
    return {
        "seq": seq,
        "received_at": received_at,
        "transport": transport,
        "format": FORMAT_NAMES.get(fmt, fmt),
        "value": value.hex() if isinstance(value, bytes) else value,
    }


def _check_key(key, epoch):
    if not isinstance(key, (bytes, bytearray)) or len(key) != MASTER_KEY_SIZE:
        raise StorageError("a master key is %d bytes (64 hex digits)" % MASTER_KEY_SIZE)
    if not isinstance(epoch, int) or not 0 <= epoch <= 255:
        raise StorageError("a key epoch is 0..255")


class SQLiteStorage:
    def __init__(self, path, synchronous="FULL", read_only=False):
        """read_only: a connection for queries only (the receiver's API read
        pool): no schema work, so opening it never waits for the write lock."""
        self.path = str(path)
        self.generation = 0
        self.read_only = read_only
        if read_only:
            try:
                if not os.path.exists(self.path):
                    raise StorageUnavailable("cannot open database %s: no such file" % self.path)
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
                self.db.execute("PRAGMA query_only=ON")
                self.db.execute("PRAGMA cache_size=-16384")
            except sqlite3.DatabaseError as exc:
                raise StorageUnavailable("cannot open database %s: %s" % (self.path, exc))
            return
        try:
            _create_private(self.path)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a reading the receiver acknowledged survives a power cut,
            # not only a crash. Batching keeps it to one fsync per batch.
            self.db.execute("PRAGMA synchronous=%s" % ("FULL" if synchronous == "FULL" else "NORMAL"))
            self.db.execute("PRAGMA foreign_keys=ON")
            # Every batch touches about one readings page per active device;
            # keeping them cached saves re-reading them for the next batch.
            self.db.execute("PRAGMA cache_size=-65536")
            self.db.executescript(SCHEMA)
            columns = [row[1] for row in self.db.execute("PRAGMA table_info(readings)")]
            if "ack" not in columns:  # a database made before acks were kept
                self.db.execute("ALTER TABLE readings ADD COLUMN ack BLOB")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            _make_private(self.path)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StorageUnavailable("cannot open database %s: %s" % (self.path, exc))
        # Bumped on every registry write through this object, so a cached view
        # in the same process (which PRAGMA data_version does not cover) reloads.
        self.generation = 0

    def close(self):
        self.db.close()

    def set_busy_timeout(self, seconds):
        """How long a write waits for another process's lock before StorageBusy."""
        self.db.execute("PRAGMA busy_timeout=%d" % int(seconds * 1000))

    def begin_batch(self):
        """Takes the write lock for an ingest batch (BEGIN IMMEDIATE);
        StorageBusy when another process holds it past the busy timeout."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise StorageBusy("database %s is locked by another process" % self.path)
            raise

    @contextmanager
    def write(self):
        """One write transaction taken with the write lock up front."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.generation += 1

    def data_version(self):
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    # --- devices -----------------------------------------------------------

    def _device_id(self, name_or_id):
        if isinstance(name_or_id, int):
            row = self.db.execute("SELECT id FROM devices WHERE id = ?", (name_or_id,)).fetchone()
        else:
            row = self.db.execute("SELECT id FROM devices WHERE name = ?", (name_or_id,)).fetchone()
        if row is None:
            raise NoSuchDevice("no device %r (see 'mpseal devices list')" % (name_or_id,))
        return row[0]

    def add_device(self, name, key=None, epoch=0, device_id=None):
        """Registers a device; key None generates one. Returns the Device."""
        problem = check_device_name(name)
        if problem:
            raise StorageError(problem)
        if key is None:
            key = os.urandom(MASTER_KEY_SIZE)
        _check_key(key, epoch)
        now = time.time()
        with self.write() as db:
            if db.execute("SELECT 1 FROM devices WHERE name = ?", (name,)).fetchone():
                raise DeviceExists("device %r exists already (remove it first or pick another name)" % name)
            if device_id is None:
                device_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM devices").fetchone()[0]
            if not 0 <= device_id <= MAX_SEQ:
                raise StorageError("a device id is 0..2**32-1")
            if db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
                raise DeviceExists("device id %d is taken" % device_id)
            db.execute("INSERT INTO devices (id, name, created_at) VALUES (?, ?, ?)", (device_id, name, now))
            db.execute(
                "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)", (device_id, epoch, bytes(key), KEY_CURRENT, now)
            )
        return self.get_device(device_id)

    def remove_device(self, name_or_id):
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            db.execute("DELETE FROM devices WHERE id = ?", (device_id,))
            db.execute("DELETE FROM rejections WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM device_events WHERE device_id = ?", (device_id,))

    def _devices(self, where="", params=()):
        cursor = self.db.execute(
            "SELECT d.id, d.name, k.epoch, k.master_key, p.epoch AS pending_epoch, d.created_at, d.replay_window,"
            " d.last_seq, d.last_seen, d.last_transport, d.host_seq, d.allowed_numbers,"
            " d.received, d.stored, d.duplicates, d.rejected"
            " FROM devices d JOIN device_keys k ON k.device_id = d.id AND k.state = 'current'"
            " LEFT JOIN device_keys p ON p.device_id = d.id AND p.state = 'pending' " + where + " ORDER BY d.id",
            params,
        )
        names = [column[0] for column in cursor.description]
        devices = []
        for row in cursor.fetchall():
            fields = dict(zip(names, row))
            fields["master_key"] = bytes(fields["master_key"])
            fields["replay_window"] = bytes(fields["replay_window"] or b"")
            fields["allowed_numbers"] = json.loads(fields["allowed_numbers"])
            devices.append(Device(**fields))
        return devices

    def get_device(self, name_or_id):
        """The Device by name (str) or id (int), or None."""
        column = "d.id" if isinstance(name_or_id, int) else "d.name"
        found = self._devices("WHERE %s = ?" % column, (name_or_id,))
        return found[0] if found else None

    def list_devices(self):
        return self._devices()

    # --- keys ----------------------------------------------------------------

    def device_keys(self, name_or_id):
        device_id = self._device_id(name_or_id)
        return [
            (epoch, bytes(key), state)
            for epoch, key, state in self.db.execute(
                "SELECT epoch, master_key, state FROM device_keys WHERE device_id = ? ORDER BY state", (device_id,)
            )
        ]

    def all_keys(self):
        """{device id: [(epoch, key, state)]} for the ingest cache."""
        keys = {}
        for device_id, epoch, key, state in self.db.execute("SELECT device_id, epoch, master_key, state FROM device_keys"):
            keys.setdefault(device_id, []).append((epoch, bytes(key), state))
        return keys

    def add_pending_key(self, name_or_id, epoch, key):
        """Starts a rotation: both epochs are accepted until the first packet
        under `epoch` arrives; then the old key is deleted."""
        _check_key(key, epoch)
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            current = db.execute(
                "SELECT epoch FROM device_keys WHERE device_id = ? AND state = 'current'", (device_id,)
            ).fetchone()
            if current and current[0] == epoch:
                raise StorageError("epoch %d is the current one; a new key needs a new epoch" % epoch)
            db.execute("DELETE FROM device_keys WHERE device_id = ? AND state = 'pending'", (device_id,))
            db.execute(
                "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)", (device_id, epoch, bytes(key), KEY_PENDING, time.time())
            )

    def set_key(self, name_or_id, epoch, key):
        """Replaces every key of the device with this one (re-provisioning)."""
        _check_key(key, epoch)
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            db.execute("DELETE FROM device_keys WHERE device_id = ?", (device_id,))
            db.execute(
                "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)", (device_id, epoch, bytes(key), KEY_CURRENT, time.time())
            )

    def set_allowed_numbers(self, name_or_id, numbers):
        numbers = [str(n) for n in numbers]
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            db.execute("UPDATE devices SET allowed_numbers = ? WHERE id = ?", (json.dumps(numbers), device_id))

    # --- downlink ------------------------------------------------------------

    def queue_command(self, name_or_id, command):
        """command: (opcode, argument bytes), e.g. mpseal.control.read_now().
        Returns the command id; it rides on the next ack to the device."""
        opcode, argument = command
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            cursor = db.execute(
                "INSERT INTO commands (device_id, opcode, argument, created_at) VALUES (?, ?, ?, ?)",
                (device_id, opcode, bytes(argument), time.time()),
            )
            return cursor.lastrowid

    def list_commands(self, name_or_id):
        """[(id, opcode, created_at, sent_at, sent_host_seq, acked_device_seq)];
        no arguments (a rotate-key argument holds a key)."""
        device_id = self._device_id(name_or_id)
        return self.db.execute(
            "SELECT id, opcode, created_at, sent_at, sent_host_seq, acked_device_seq FROM commands"
            " WHERE device_id = ? ORDER BY id",
            (device_id,),
        ).fetchall()

    def unsent_commands(self, device_id):
        return self.db.execute(
            "SELECT id, opcode, argument FROM commands WHERE device_id = ? AND sent_at IS NULL ORDER BY id", (device_id,)
        ).fetchall()

    def commands_acking(self, device_id, device_seq):
        """Commands an earlier ack of this device seq carried (sent again with a re-ack)."""
        return self.db.execute(
            "SELECT id, opcode, argument FROM commands WHERE device_id = ? AND acked_device_seq = ? ORDER BY id",
            (device_id, device_seq),
        ).fetchall()

    def devices_with_unsent_commands(self):
        return {row[0] for row in self.db.execute("SELECT DISTINCT device_id FROM commands WHERE sent_at IS NULL")}

    def take_commands(self, name_or_id):
        """Unsent commands as [(opcode, argument)], marked sent, for a downlink
        that is not an ack (e.g. an SMS command packet)."""
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            rows = self.unsent_commands(device_id)
            db.executemany("UPDATE commands SET sent_at = ? WHERE id = ?", [(time.time(), r[0]) for r in rows])
        return [(opcode, bytes(argument)) for _, opcode, argument in rows]

    def next_host_seq(self, name_or_id):
        """Reserves and returns the next host->device sequence number."""
        with self.write() as db:
            device_id = self._device_id(name_or_id)
            db.execute("UPDATE devices SET host_seq = host_seq + 1 WHERE id = ?", (device_id,))
            return db.execute("SELECT host_seq FROM devices WHERE id = ?", (device_id,)).fetchone()[0]

    # --- ingest (called by mpseal_host.ingest inside write()) ----------------

    def count_rejection(self, device_id, reason):
        """Counts a refusal that never reached the pipeline (an HTTP body that
        is not a packet). Not a registry write: the ingest cache stays valid."""
        self.db.execute(COUNT_REJECTIONS, (device_id, reason, 1, time.time()))

    def stored_payload(self, device_id, seq):
        row = self.stored_reading(device_id, seq)
        return None if row is None else row[0]

    def stored_reading(self, device_id, seq):
        """(payload, the ack it got or None), or None when not stored."""
        row = self.db.execute("SELECT payload, ack FROM readings WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone()
        return None if row is None else (bytes(row[0]), None if row[1] is None else bytes(row[1]))

    def write_batch(self, batch):
        """Persists a pipeline.Batch; the caller holds the transaction."""
        db = self.db
        if batch.readings:
            db.executemany(
                "INSERT INTO readings (device_id, seq, received_at, transport, format, payload, ack) VALUES (?, ?, ?, ?, ?, ?, ?)",
                batch.readings,
            )
        if batch.acks_kept:
            db.executemany("UPDATE readings SET ack = ? WHERE device_id = ? AND seq = ?", batch.acks_kept)
        if batch.events:
            db.executemany(COUNT_EVENTS, [(device_id, name, n, batch.now) for (device_id, name), n in batch.events.items()])
        updates = []
        for state in batch.devices.values():
            updates.append(
                (
                    state.window.to_bytes(),
                    state.last_seq,
                    state.last_seen,
                    state.last_transport,
                    state.host_seq,
                    state.delta_received,
                    state.delta_stored,
                    state.delta_duplicates,
                    state.delta_rejected,
                    state.id,
                )
            )
        db.executemany(
            "UPDATE devices SET replay_window = ?, last_seq = ?, last_seen = ?, last_transport = ?,"
            " host_seq = ?, received = received + ?,"
            " stored = stored + ?, duplicates = duplicates + ?, rejected = rejected + ? WHERE id = ?",
            updates,
        )
        if batch.rejections:
            db.executemany(
                COUNT_REJECTIONS,
                [(device_id, reason, n, batch.now) for (device_id, reason), n in batch.rejections.items()],
            )
        if batch.commands_sent:
            db.executemany(
                "UPDATE commands SET sent_at = ?, sent_host_seq = ?, acked_device_seq = ? WHERE id = ?",
                batch.commands_sent,
            )
        for device_id, epoch in batch.promotions.items():
            db.execute("DELETE FROM device_keys WHERE device_id = ? AND epoch != ?", (device_id, epoch))
            db.execute("UPDATE device_keys SET state = 'current' WHERE device_id = ?", (device_id,))
            # The device uses the new key: the rotate-key commands that carried
            # it are applied, and their argument (epoch + the key) goes.
            db.execute(
                "UPDATE commands SET argument = x'' WHERE device_id = ? AND opcode = ? AND sent_at IS NOT NULL",
                (device_id, CMD_ROTATE_KEY),
            )

    # --- API tokens (mpseal token; checked by mpseal_host.access) ------------

    def add_token(self, name, digest, scope):
        if check_device_name(name):  # the same rule keeps token names printable and short
            raise StorageError("a token name is 1..%d letters, digits, '-', '_' or '.'" % MAX_DEVICE_NAME)
        with self.write() as db:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise StorageError("a token named %r exists already (revoke it first or pick another name)" % name)
            db.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?)", (name, bytes(digest), scope, time.time()))

    def list_tokens(self):
        """[(name, scope, created_at)]; never the digests."""
        return self.db.execute("SELECT name, scope, created_at FROM api_tokens ORDER BY name").fetchall()

    def revoke_token(self, name):
        with self.write() as db:
            if db.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount == 0:
                raise StorageError("no token named %r (see 'mpseal token list')" % name)

    def token_scope(self, digest):
        """(name, scope) of the token with this SHA-256, or None."""
        row = self.db.execute("SELECT name, scope FROM api_tokens WHERE digest = ?", (bytes(digest),)).fetchone()
        return None if row is None else (row[0], row[1])

    # --- queries for the API and `mpseal stats` -------------------------------

    def readings(self, name_or_id, since=None, limit=100):
        """The newest `limit` readings with a device seq above `since`, oldest first."""
        device_id = self._device_id(name_or_id)
        rows = self.db.execute(
            "SELECT seq, received_at, transport, format, payload FROM readings WHERE device_id = ? AND seq > ?"
            " ORDER BY seq DESC LIMIT ?",
            (device_id, 0 if since is None else since, limit),
        ).fetchall()
        return [_reading(*row) for row in reversed(rows)]

    def delete_readings_before(self, when):
        """Retention: deletes readings received before `when` (epoch seconds);
        returns how many. Windows and counters stay: a deleted reading's
        sequence number is still refused as a replay."""
        with self.write():
            return self.db.execute("DELETE FROM readings WHERE received_at < ?", (when,)).rowcount

    def count_readings(self, name_or_id):
        device_id = self._device_id(name_or_id)
        return self.db.execute("SELECT COUNT(*) FROM readings WHERE device_id = ?", (device_id,)).fetchone()[0]

    def readings_between(self, name_or_id, start=None, end=None, after_seq=0, limit=1000, max_points=None):
        """Readings that arrived in [start, end) (Unix seconds, None = open)
        with a device seq above `after_seq`, oldest first, at most `limit`
        (page on with after_seq = the last seq). With `max_points`, a range
        holding more readings is thinned to every k-th seq (for charts), the
        newest always kept. Arrival time is not indexed: this scans the
        device's readings by seq (cheap per device; an index is a storage
        decision)."""
        device_id = self._device_id(name_or_id)
        where = "device_id = ? AND seq > ? AND received_at >= ? AND received_at < ?"
        params = [device_id, after_seq, -1e300 if start is None else start, 1e300 if end is None else end]
        thin = ""
        if max_points:
            count, first, last = self.db.execute(
                "SELECT COUNT(*), MIN(seq), MAX(seq) FROM readings WHERE " + where, params
            ).fetchone()
            if count > max_points:
                stride = -(-count // max_points)
                thin = " AND ((seq - ?) %% %d = 0 OR seq = ?)" % stride
                params += [first, last]
        rows = self.db.execute(
            "SELECT seq, received_at, transport, format, payload FROM readings WHERE " + where + thin
            + " ORDER BY seq LIMIT ?",
            params + [limit],
        ).fetchall()
        return [_reading(*row) for row in rows]

    def arrival_times(self, name_or_id, limit=20):
        """[(seq, received_at)] of the device's newest `limit` readings, newest
        first: what its reporting interval is estimated from."""
        device_id = self._device_id(name_or_id)
        return self.db.execute(
            "SELECT seq, received_at FROM readings WHERE device_id = ? ORDER BY seq DESC LIMIT ?", (device_id, limit)
        ).fetchall()

    def last_sent_commands(self, opcode):
        """{device id: argument bytes} of the newest command with `opcode`
        that went out in an ack, per device (e.g. the set-interval a device
        was last told)."""
        rows = self.db.execute(
            "SELECT device_id, argument FROM commands WHERE id IN (SELECT MAX(id) FROM commands"
            " WHERE opcode = ? AND sent_at IS NOT NULL GROUP BY device_id)",
            (opcode,),
        ).fetchall()
        return {device_id: bytes(argument) for device_id, argument in rows}

    def latest_readings(self):
        """{device name: its reading with the highest seq, or None}."""
        rows = self.db.execute(
            "SELECT d.name, r.seq, r.received_at, r.transport, r.format, r.payload FROM devices d"
            " LEFT JOIN readings r ON r.device_id = d.id AND r.seq = d.last_seq ORDER BY d.id"
        ).fetchall()
        return {row[0]: None if row[1] is None else _reading(*row[1:]) for row in rows}

    def rejection_counts(self):
        """(total by reason, {device name or '(unregistered)': {reason: n}})."""
        totals = {}
        per_device = {}
        rows = self.db.execute(
            "SELECT COALESCE(d.name, '(unregistered)'), r.reason, r.count FROM rejections r"
            " LEFT JOIN devices d ON d.id = r.device_id ORDER BY r.reason"
        )
        for name, reason, count in rows:
            totals[reason] = totals.get(reason, 0) + count
            per_device.setdefault(name, {})
            per_device[name][reason] = per_device[name].get(reason, 0) + count
        return totals, per_device

    def event_counts(self):
        """{device name: {event: n}} (pipeline.py's events: reack_limited, resync:<why>, ...)."""
        per_device = {}
        rows = self.db.execute(
            "SELECT COALESCE(d.name, '(unregistered)'), e.event, e.count FROM device_events e"
            " LEFT JOIN devices d ON d.id = e.device_id ORDER BY e.event"
        )
        for name, event, count in rows:
            per_device.setdefault(name, {})[event] = count
        return per_device

    def counter_warnings(self):
        """{device name: text} for counters near 2**32-1 (docs/protocol.md section 5)."""
        warnings = {}
        for name, last_seq, host_seq in self.db.execute("SELECT name, last_seq, host_seq FROM devices ORDER BY id"):
            if last_seq >= MAX_SEQ:
                warnings[name] = "device sequence numbers used up (2**32-1): the board stopped sealing; re-provision it"
            elif host_seq >= HOST_SEQ_WARN:
                warnings[name] = "host->device sequence at %d of %d: re-provision the device before it runs out" % (host_seq, MAX_SEQ)
        return warnings

    def stats(self):
        totals, per_device = self.rejection_counts()
        sums = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(received), 0), COALESCE(SUM(stored), 0), COALESCE(SUM(duplicates), 0)"
            " FROM devices"
        ).fetchone()
        return {
            "devices": sums[0],
            "received": sums[1] + sum(per_device.get("(unregistered)", {}).values()),
            "stored": sums[2],
            "duplicates": sums[3],
            "rejected": sum(totals.values()),
            "rejected_by_reason": totals,
            "rejected_by_device": per_device,
            "events_by_device": self.event_counts(),
            "counter_warnings": self.counter_warnings(),
        }
