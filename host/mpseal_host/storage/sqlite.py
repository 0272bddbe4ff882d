"""The SQLite implementation of the storage contract (the embedded default).
One file, mode 0600, WAL; see docs/receiver.md.

Several processes may share the file (receiver, sms-ingest, the CLI). Writes
that depend on what was read (ingest batches, host sequence numbers) run in
`BEGIN IMMEDIATE`, which takes SQLite's single write lock first, so the
"locked rows" of ingest_transaction are the whole database here.

Layout choices that keep ingest cost flat as a fleet ages (issue 18):
readings get an increasing rowid (new rows append to the table's last pages)
and a small (device, seq) unique index; batches are large, so each device's
index leaf is dirtied once per batch, not once per reading; the WAL is
checkpointed by a background thread (serving=True), never inside a commit.
"""
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager

from mpseal.control import CMD_ROTATE_KEY
from mpseal_host.storage import migrations_sqlite
from mpseal_host.storage.contract import Storage
from mpseal_host.storage.sql_common import SqlQueries
from mpseal_host.storage.model import (
    KEY_CURRENT,
    Device,
    StorageBusy,
    StorageUnavailable,
    check_device_id,
    check_device_name,
    check_key,
    device_exists,
    new_key,
    no_such_device,
    reading_dict,
)

log = logging.getLogger("mpseal.storage")

SCHEMA_VERSION = migrations_sqlite.SCHEMA_VERSION
CHECKPOINT_EVERY_S = 1.0
# Device rows per UPDATE ... FROM (VALUES ...) statement: 11 parameters each,
# well under SQLite's 32766-variable limit.
DEVICE_ROWS_PER_STATEMENT = 500
IDS_PER_QUERY = 5000

COUNT_REJECTIONS = (
    "INSERT INTO rejections VALUES (?, ?, ?, ?) ON CONFLICT (device_id, reason)"
    " DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at"
)
COUNT_EVENTS = (
    "INSERT INTO device_events VALUES (?, ?, ?, ?) ON CONFLICT (device_id, event)"
    " DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at"
)
DEVICE_COLUMNS = (
    "d.id, d.name, k.epoch, k.master_key, p.epoch AS pending_epoch, d.created_at, d.replay_window,"
    " d.last_seq, d.last_seen, d.last_transport, d.host_seq, d.allowed_numbers,"
    " d.received, d.stored, d.duplicates, d.rejected, d.version"
)
DEVICE_JOIN = (
    " FROM devices d JOIN device_keys k ON k.device_id = d.id AND k.state = 'current'"
    " LEFT JOIN device_keys p ON p.device_id = d.id AND p.state = 'pending' "
)


def _create_private(path):
    # Create the file 0600 before SQLite opens it; SQLite gives its -wal and
    # -shm files the same mode as the database file.
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


def _failure(what, exc):
    return StorageUnavailable("%s: %s" % (what, exc))


def _device(row):
    (id_, name, epoch, key, pending, created, window, last_seq, last_seen, last_transport, host_seq, numbers,
     received, stored, duplicates, rejected, version) = row
    return Device(id_, name, epoch, bytes(key), pending, created, bytes(window or b""), last_seq, last_seen,
                  last_transport, host_seq, json.loads(numbers), received, stored, duplicates, rejected, version)


def _chunks(seq, size):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class Checkpointer(threading.Thread):
    """Runs the WAL checkpoint on its own connection, off the ingest path: the
    writer never pays for copying pages back into the database file."""

    def __init__(self, path):
        super().__init__(name="mpseal-sqlite-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()
        self.checkpoints = 0

    def run(self):
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=1.0)
        except sqlite3.Error:
            return
        try:
            while not self.stopping.wait(CHECKPOINT_EVERY_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error:
                    pass  # busy or gone: next round
        finally:
            db.close()

    def stop(self):
        self.stopping.set()
        self.join(5)


class SQLiteStorage(SqlQueries, Storage):
    def __init__(self, path, synchronous="FULL", serving=False, read_only=False):
        """read_only: a connection for queries only (the receiver's API read
        pool): no schema work, so opening it never waits for the write lock."""
        self.path = self.location = self.connect_location = str(path)
        self.checkpointer = None
        self.generation = 0
        self.read_only = read_only
        if read_only:
            try:
                if not os.path.isfile(self.path):
                    raise StorageUnavailable("cannot open database %s: no such file" % self.path)
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
                self.db.execute("PRAGMA query_only=ON")
                self.db.execute("PRAGMA cache_size=-16384")
            except sqlite3.Error as exc:
                raise StorageUnavailable("cannot open database %s: %s" % (self.path, exc))
            return
        try:
            if os.path.isdir(self.path):
                raise StorageUnavailable("cannot open database %s: it is a directory" % self.path)
            _create_private(self.path)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a reading the receiver acknowledged survives a power cut,
            # not only a crash. Batching keeps it to one fsync per batch.
            self.db.execute("PRAGMA synchronous=%s" % ("FULL" if synchronous == "FULL" else "NORMAL"))
            self.db.execute("PRAGMA foreign_keys=ON")
            # Every batch touches about one index page per active device;
            # keeping them cached saves re-reading them for the next batch.
            self.db.execute("PRAGMA cache_size=-65536")
            migrations_sqlite.migrate(self.db, self.path)
            _make_private(self.path)
        except StorageUnavailable:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable("cannot open database %s: %s" % (self.path, exc))
        if serving and self.path != ":memory:":
            # A long-running writer: checkpoints go to a thread of their own.
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.checkpointer = Checkpointer(self.path)
            self.checkpointer.start()
        # self.generation: bumped on every write through this object (PRAGMA
        # data_version only sees other connections' writes, the change token
        # must see both).

    def close(self):
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.db.close()

    def set_busy_timeout(self, seconds):
        self.db.execute("PRAGMA busy_timeout=%d" % int(seconds * 1000))

    def check(self):
        try:
            self.db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise _failure("database %s" % self.path, exc)

    def schema_version(self):
        return migrations_sqlite.current_version(self.db)

    def change_token(self):
        try:
            return "%d.%d" % (self.db.execute("PRAGMA data_version").fetchone()[0], self.generation)
        except sqlite3.Error as exc:
            raise _failure("reading the change token", exc)

    @contextmanager
    def _write(self, what="write"):
        """One write transaction with the write lock taken up front."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise StorageBusy("database %s is locked by another process (%s)" % (self.path, what)) from exc
            raise _failure("cannot start a %s on %s" % (what, self.path), exc)
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise _failure("%s on %s failed" % (what, self.path), exc) from exc
            raise
        finally:
            self.generation += 1

    @contextmanager
    def _read(self, what):
        try:
            yield self.db
        except sqlite3.Error as exc:
            raise _failure("%s on %s failed" % (what, self.path), exc) from exc

    def _touch(self, db, device_id):
        db.execute("UPDATE devices SET version = version + 1 WHERE id = ?", (device_id,))

    # --- devices -----------------------------------------------------------

    def _device_id(self, name_or_id, lock=False):  # BEGIN IMMEDIATE already locks everything
        column = "id" if isinstance(name_or_id, int) else "name"
        row = self.db.execute("SELECT id FROM devices WHERE %s = ?" % column, (name_or_id,)).fetchone()
        if row is None:
            raise no_such_device(name_or_id)
        return row[0]

    def add_device(self, name, key=None, epoch=0, device_id=None):
        check_device_name(name)
        key = new_key() if key is None else key
        check_key(key, epoch)
        now = time.time()
        with self._write("adding a device") as db:
            if db.execute("SELECT 1 FROM devices WHERE name = ?", (name,)).fetchone():
                raise device_exists(name)
            if device_id is None:
                device_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM devices").fetchone()[0]
            check_device_id(device_id)
            if db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
                raise device_exists("id %d" % device_id)
            # The change counter starts at the clock (µs), so a device removed and
            # added again under its id never matches a cache of the old one.
            db.execute(
                "INSERT INTO devices (id, name, created_at, version) VALUES (?, ?, ?, ?)",
                (device_id, name, now, time.time_ns() // 1000),
            )
            db.execute("INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)", (device_id, epoch, bytes(key), KEY_CURRENT, now))
        return self.get_device(device_id)

    def remove_device(self, name_or_id):
        with self._write("removing a device") as db:
            device_id = self._device_id(name_or_id)
            db.execute("DELETE FROM devices WHERE id = ?", (device_id,))  # keys, readings, commands cascade
            db.execute("DELETE FROM rejections WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM device_events WHERE device_id = ?", (device_id,))

    def _devices(self, where="", params=(), tail=""):
        with self._read("listing devices") as db:
            rows = db.execute("SELECT " + DEVICE_COLUMNS + DEVICE_JOIN + where + " ORDER BY d.id" + tail, params).fetchall()
        return [_device(row) for row in rows]

    # --- keys ----------------------------------------------------------------

    def set_allowed_numbers(self, name_or_id, numbers):
        numbers = [str(n) for n in numbers]
        with self._write("setting allowed numbers") as db:
            device_id = self._device_id(name_or_id)
            db.execute(
                "UPDATE devices SET allowed_numbers = ?, version = version + 1 WHERE id = ?",
                (json.dumps(numbers), device_id),
            )

    # --- downlink ------------------------------------------------------------

    def queue_command(self, name_or_id, command):
        opcode, argument = command
        with self._write("queueing a command") as db:
            device_id = self._device_id(name_or_id)
            cursor = db.execute(
                "INSERT INTO commands (device_id, opcode, argument, created_at) VALUES (?, ?, ?, ?)",
                (device_id, opcode, bytes(argument), time.time()),
            )
            self._touch(db, device_id)
            return cursor.lastrowid

    def take_commands(self, name_or_id):
        with self._write("taking commands") as db:
            device_id = self._device_id(name_or_id)
            rows = db.execute(
                "SELECT id, opcode, argument FROM commands WHERE device_id = ? AND sent_at IS NULL ORDER BY id",
                (device_id,),
            ).fetchall()
            db.executemany("UPDATE commands SET sent_at = ? WHERE id = ?", [(time.time(), r[0]) for r in rows])
            self._touch(db, device_id)
        return [(opcode, bytes(argument)) for _, opcode, argument in rows]

    def next_host_seq(self, name_or_id):
        with self._write("reserving a host sequence number") as db:
            device_id = self._device_id(name_or_id)
            db.execute("UPDATE devices SET host_seq = host_seq + 1, version = version + 1 WHERE id = ?", (device_id,))
            return db.execute("SELECT host_seq FROM devices WHERE id = ?", (device_id,)).fetchone()[0]

    # --- ingest ----------------------------------------------------------------

    @contextmanager
    def ingest_transaction(self, device_ids, now=None):
        with self._write("storing a batch") as db:
            versions = {}
            ids = list(device_ids)
            for chunk in _chunks(ids, IDS_PER_QUERY):
                rows = db.execute(
                    "SELECT id, version FROM devices WHERE id IN (%s)" % ",".join("?" * len(chunk)), chunk
                ).fetchall()
                versions.update(rows)
            yield versions

    def ingest_states(self, device_ids):
        ids = list(device_ids)
        states = []
        with self._read("loading device state") as db:
            for chunk in _chunks(ids, IDS_PER_QUERY):
                marks = ",".join("?" * len(chunk))
                devices = [_device(r) for r in db.execute(
                    "SELECT " + DEVICE_COLUMNS + DEVICE_JOIN + "WHERE d.id IN (%s)" % marks, chunk)]
                keys = {}
                for device_id, epoch, key, state in db.execute(
                    "SELECT device_id, epoch, master_key, state FROM device_keys WHERE device_id IN (%s)" % marks, chunk
                ):
                    keys.setdefault(device_id, []).append((epoch, bytes(key), state))
                with_commands = {
                    row[0]
                    for row in db.execute(
                        "SELECT DISTINCT device_id FROM commands WHERE sent_at IS NULL AND device_id IN (%s)" % marks,
                        chunk,
                    )
                }
                states.extend((d, keys.get(d.id, []), d.id in with_commands) for d in devices)
        return states

    def write_batch(self, batch):
        db = self.db
        if batch.readings:
            db.executemany(
                "INSERT INTO readings (device_id, seq, received_at, transport, format, payload, value, ack)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                batch.readings,
            )
        # One statement per (up to) 500 devices: their state and counters.
        rows = [
            (s.id, s.window.to_bytes(), s.last_seq, s.last_seen, s.last_transport, s.host_seq,
             s.delta_received, s.delta_stored, s.delta_duplicates, s.delta_rejected)
            for s in batch.devices.values()
        ]
        for chunk in _chunks(rows, DEVICE_ROWS_PER_STATEMENT):
            db.execute(
                "WITH v(id, w, ls, seen, tr, hs, dr, ds, dd, dj) AS (VALUES %s)"
                " UPDATE devices SET replay_window = v.w, last_seq = v.ls, last_seen = v.seen,"
                " last_transport = v.tr, host_seq = v.hs, received = received + v.dr, stored = stored + v.ds,"
                " duplicates = duplicates + v.dd, rejected = rejected + v.dj, version = version + 1"
                " FROM v WHERE devices.id = v.id" % ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * len(chunk)),
                [x for row in chunk for x in row],
            )
        if batch.rejections:
            db.executemany(
                COUNT_REJECTIONS,
                [(device_id, reason, n, batch.now) for (device_id, reason), n in sorted(batch.rejections.items())],
            )
        if batch.commands_sent:
            db.executemany(
                "UPDATE commands SET sent_at = ?, sent_host_seq = ?, acked_device_seq = ? WHERE id = ?",
                batch.commands_sent,
            )
        acks_kept = getattr(batch, "acks_kept", ())  # (ack, device_id, seq): acks sealed for readings stored without one
        if acks_kept:
            db.executemany("UPDATE readings SET ack = ? WHERE device_id = ? AND seq = ?", acks_kept)
        events = getattr(batch, "events", None)  # {(device_id, event): n}
        if events:
            db.executemany(COUNT_EVENTS, [(d, e, n, batch.now) for (d, e), n in sorted(events.items())])
        for device_id, epoch in batch.promotions.items():
            db.execute("DELETE FROM device_keys WHERE device_id = ? AND epoch != ?", (device_id, epoch))
            db.execute("UPDATE device_keys SET state = 'current' WHERE device_id = ?", (device_id,))
            # The device uses the new key: the rotate-key commands that carried
            # it are applied, and their argument (epoch + the key) goes.
            db.execute(
                "UPDATE commands SET argument = ? WHERE device_id = ? AND opcode = ? AND sent_at IS NOT NULL",
                (b"", device_id, CMD_ROTATE_KEY),
            )

    def count_rejection(self, device_id, reason):
        try:
            self.db.execute(COUNT_REJECTIONS, (device_id, reason, 1, time.time()))
        except sqlite3.Error as exc:
            raise _failure("counting a rejection", exc)
        self.generation += 1

    # --- queries -----------------------------------------------------------------

    def delete_readings_before(self, when):
        """Retention: deletes readings received before `when` (epoch seconds);
        returns how many. Windows and counters stay: a deleted reading's
        sequence number is still refused as a replay."""
        with self._write("deleting old readings") as db:
            return db.execute("DELETE FROM readings WHERE received_at < ?", (when,)).rowcount

    def _latest(self, where="", params=()):
        with self._read("reading latest readings") as db:
            rows = db.execute(
                "SELECT d.name, r.seq, r.received_at, r.transport, r.format, r.value FROM devices d"
                " LEFT JOIN readings r ON r.device_id = d.id AND r.seq = d.last_seq " + where + " ORDER BY d.id",
                params,
            ).fetchall()
        return {row[0]: None if row[1] is None else reading_dict(*row[1:]) for row in rows}

    def latest_readings(self, names=None):
        if names is None:
            return self._latest()
        names = list(names)
        return self._latest("WHERE d.name IN (%s)" % ",".join("?" * len(names)), names) if names else {}

    def _latest_readings_of_ids(self, lo, hi):
        return self._latest("WHERE d.id BETWEEN ? AND ?", (lo, hi))
