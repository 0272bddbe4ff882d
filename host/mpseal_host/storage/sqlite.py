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
import logging
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager

from mpseal_host.storage import migrations_sqlite
from mpseal_host.storage.contract import Storage
from mpseal_host.storage.sql_common import INSERT_COMMAND, SqlQueries
from mpseal_host.storage.model import StorageBusy, StorageUnavailable

log = logging.getLogger("mpseal.storage")

SCHEMA_VERSION = migrations_sqlite.SCHEMA_VERSION
CHECKPOINT_EVERY_S = 1.0
# Device rows per UPDATE ... FROM (VALUES ...) statement: 10 parameters each,
# well under SQLite's 32766-variable limit.
DEVICE_ROWS_PER_STATEMENT = 500

UPDATE_DEVICE_STATES = (
    "WITH v(id, w, ls, seen, tr, hs, dr, ds, dd, dj) AS (VALUES %s)"
    " UPDATE devices SET replay_window = v.w, last_seq = v.ls, last_seen = v.seen,"
    " last_transport = v.tr, host_seq = v.hs, received = received + v.dr, stored = stored + v.ds,"
    " duplicates = duplicates + v.dd, rejected = rejected + v.dj, version = version + 1"
    " FROM v WHERE devices.id = v.id"
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
    LATEST_JOIN = " LEFT JOIN readings r ON r.device_id = d.id AND r.seq = d.last_seq "
    IDS_PER_QUERY = 5000  # SQLite takes at most 32766 parameters in one statement

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

    def _connection(self):
        return self.db

    # --- what SQLite does its own way ----------------------------------------------

    def _insert_command(self, db, row):
        return db.execute(INSERT_COMMAND, row).lastrowid

    def _take_unsent(self, db, device_id, now):
        rows = db.execute(
            "SELECT id, opcode, argument FROM commands WHERE device_id = ? AND sent_at IS NULL ORDER BY id", (device_id,)
        ).fetchall()
        db.executemany("UPDATE commands SET sent_at = ? WHERE id = ?", [(now, r[0]) for r in rows])
        return rows

    def _bump_host_seq(self, db, device_id):
        db.execute("UPDATE devices SET host_seq = host_seq + 1, version = version + 1 WHERE id = ?", (device_id,))
        return db.execute("SELECT host_seq FROM devices WHERE id = ?", (device_id,)).fetchone()[0]

    def _update_device_states(self, db, rows):
        # One statement per (up to) 500 devices: their state and counters.
        for chunk in _chunks(rows, DEVICE_ROWS_PER_STATEMENT):
            db.execute(
                UPDATE_DEVICE_STATES % ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * len(chunk)), [x for row in chunk for x in row]
            )

    def count_rejection(self, device_id, reason):
        try:
            self._add_counts(self.db, "rejections", "reason", [(device_id, reason, 1, time.time())])
        except sqlite3.Error as exc:
            raise _failure("counting a rejection", exc)
        self.generation += 1

    def delete_readings_before(self, when):
        """Retention: deletes readings received before `when` (epoch seconds);
        returns how many. Windows and counters stay: a deleted reading's
        sequence number is still refused as a replay."""
        with self._write("deleting old readings") as db:
            return db.execute("DELETE FROM readings WHERE received_at < ?", (when,)).rowcount
