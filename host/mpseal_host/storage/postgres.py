"""The PostgreSQL implementation of the storage contract: one database
shared by N receivers (processes or machines), selected by a
postgresql:// URL. Driver: psycopg 3 (synchronous, like the contract; see
docs/receiver.md for the measurement against asyncpg).

How N receivers never accept a seq twice: every ingest batch starts with
`SELECT ... FROM devices WHERE id = ANY(ids) ORDER BY id FOR UPDATE`. The
rows of the batch's devices stay locked until its commit, in id order (no
deadlock between receivers); the replay windows are checked and moved, the
readings copied in and the device rows updated in that one transaction. A
receiver that waited for a lock sees the winner's new change counter and
reloads that device (window, host seq, unsent commands) before it looks at
its own packets: the second copy of a packet is then a duplicate, never a
second reading, and a command is taken by exactly one ack.

The receiver's writer (set_busy_timeout) waits for those locks in slices: a
lock_timeout per write transaction, at least MIN_LOCK_SLICE_S, so a session
holding a device row for long (a psql FOR UPDATE, a long command) is
StorageBusy with nothing written and the writer reports the wait and tries
again, as with SQLite's busy timeout, while re-acks of committed readings go on.

Readings are partitioned by calendar month (UTC) on received_at; writers
create the partition of the current and the next month ahead of time, and
delete_readings_before() drops whole partitions.
"""
import calendar
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg
from psycopg import errors as pg_errors

from mpseal_host.storage import migrations_postgres
from mpseal_host.storage.contract import Storage
from mpseal_host.storage.sql_common import ADD_COUNTS, INSERT_COMMAND, READING_COLUMNS, SqlQueries
from mpseal_host.storage.model import StorageBusy, StorageUnavailable, device_exists, newer_schema

SCHEMA_VERSION = migrations_postgres.SCHEMA_VERSION
PARTITION_LOCK = 4740_0002  # pg_advisory_xact_lock key: creating partitions
PARTITION_NAME = re.compile(r"^readings_p(\d{4})(\d{2})$")
# The row locks of a batch's devices are also how N receivers take turns (a
# batch holds them for ~0.2 s at most): a lock wait shorter than this is that
# ordinary turn-taking, not a lock held elsewhere, and does not end the wait.
MIN_LOCK_SLICE_S = 1.0
# The transaction's own lock_timeout, unless the session has one (an operator's).
LOCK_SLICE = (
    "SELECT set_config('lock_timeout', CASE current_setting('lock_timeout') WHEN '0' THEN %s::text || 'ms'"
    " ELSE current_setting('lock_timeout') END, true)"
)
# The bulk writes of an ingest batch: COPY, and one statement over arrays.
COPY_READINGS = "COPY " + READING_COLUMNS + " FROM STDIN"
UNNEST_COUNTS = "SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::float8[])"
UPDATE_DEVICE_STATES = (
    "UPDATE devices d SET replay_window = v.w, last_seq = v.ls, last_seen = v.seen,"
    " last_transport = v.tr, host_seq = v.hs, received = d.received + v.dr, stored = d.stored + v.ds,"
    " duplicates = d.duplicates + v.dd, rejected = d.rejected + v.dj, version = d.version + 1"
    " FROM unnest(?::bigint[], ?::bytea[], ?::bigint[], ?::float8[], ?::text[], ?::bigint[],"
    " ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) AS v(id, w, ls, seen, tr, hs, dr, ds, dd, dj)"
    " WHERE d.id = v.id"
)
MARK_COMMANDS_SENT = (
    "UPDATE commands c SET sent_at = v.at, sent_host_seq = v.hs, acked_device_seq = v.ds"
    " FROM unnest(?::float8[], ?::bigint[], ?::bigint[], ?::bigint[]) AS v(at, hs, ds, id)"
    " WHERE c.id = v.id"
)
KEEP_ACKS = (
    "UPDATE readings r SET ack = v.ack FROM unnest(?::bytea[], ?::bigint[], ?::bigint[]) AS v(ack, d, s)"
    " WHERE r.device_id = v.d AND r.seq = v.s"
)


def _columns(rows, width):
    """Rows as `width` lists, one a column (the arrays unnest() takes)."""
    return tuple(list(column) for column in zip(*rows)) if rows else ([],) * width


def _month_start(year, month):
    return calendar.timegm((year, month, 1, 0, 0, 0))


def _next_month(year, month):
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _month_of(unix_time):
    moment = datetime.fromtimestamp(unix_time, timezone.utc)
    return moment.year, moment.month


def _safe_location(url):
    """The URL without a password, for log lines."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


class PostgresStorage(SqlQueries, Storage):
    JSON_TEXT = "::text"  # jsonb as the JSON text the shared queries decode
    JSON_PARAM = "?::jsonb"
    ROW_LOCK = " FOR UPDATE"
    LOCK_FOR_NEW_ID = "LOCK TABLE devices IN SHARE ROW EXCLUSIVE MODE"  # the next free id, once
    LATEST_JOIN = (
        " LEFT JOIN LATERAL (SELECT * FROM readings x WHERE x.device_id = d.id AND x.seq = d.last_seq LIMIT 1) r"
        " ON true "
    )

    def _sql(self, text):
        return text.replace("%", "%%").replace("?", "%s")

    def __init__(self, url, serving=False, connect_timeout=10, read_only=False):
        """read_only: a session for queries only (the receiver's API read
        pool): no migrations, no partitions, every transaction read-only."""
        self.url = self.connect_location = url
        self.location = _safe_location(url)
        self._months = set()  # (year, month) partitions known to exist
        self._in_batch = False
        self.lock_slice_ms = None  # set_busy_timeout(): lock waits in slices of this many ms
        self.read_only = read_only
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
            if read_only:
                self.conn.execute("SET default_transaction_read_only = on")
                return
            migrations_postgres.migrate(self.conn, self.location, newer_schema)
            self._ensure_partitions(time.time())
        except StorageUnavailable:
            raise
        except psycopg.Error as exc:
            raise StorageUnavailable("cannot open database %s: %s" % (self.location, str(exc).strip().splitlines()[0]))

    def close(self):
        self.conn.close()

    def _failure(self, what, exc):
        text = str(exc).strip().splitlines()
        return StorageUnavailable("%s on %s failed: %s" % (what, self.location, text[0] if text else type(exc).__name__))

    def set_busy_timeout(self, seconds):
        """Each write transaction from now on waits at most `seconds` (never
        less than MIN_LOCK_SLICE_S) for a row or table lock, then raises
        StorageBusy with nothing written: the receiver's writer then reports
        the wait (lock-wait mode: re-acks of committed readings go on) and
        tries the batch again, as long as it takes. Without this call
        (the CLI) a write waits for a lock as long as it takes. An operator's
        own lock_timeout (URL options, role, database, postgresql.conf or a
        SET) is left as it is: it keeps ending a wait as StorageBusy."""
        self.lock_slice_ms = int(max(seconds, MIN_LOCK_SLICE_S) * 1000)

    @contextmanager
    def _write(self, what):
        try:
            with self.conn.transaction():
                if self.lock_slice_ms is not None:
                    self.conn.execute(LOCK_SLICE, (self.lock_slice_ms,))
                yield self.conn
                self.conn.execute("SELECT nextval('changes')")
        except pg_errors.LockNotAvailable as exc:
            raise StorageBusy("database %s: a lock is held by another process (%s)" % (self.location, what)) from exc
        except psycopg.Error as exc:
            raise self._failure(what, exc) from exc

    @contextmanager
    def _read(self, what):
        try:
            yield self.conn
        except psycopg.Error as exc:
            raise self._failure(what, exc) from exc

    def check(self):
        with self._read("health check") as conn:
            conn.execute("SELECT 1").fetchone()

    def schema_version(self):
        with self._read("reading the schema version") as conn:
            return migrations_postgres.current_version(conn)

    def change_token(self):
        with self._read("reading the change token") as conn:
            value, called = conn.execute("SELECT last_value, is_called FROM changes").fetchone()
        return str(value if called else 0)

    # --- partitions ------------------------------------------------------------

    def _ensure_partitions(self, now):
        """The partitions of this month and the next exist (created once,
        under an advisory lock, outside any ingest transaction)."""
        this = _month_of(now)
        wanted = [this, _next_month(*this)]
        missing = [m for m in wanted if m not in self._months]
        if not missing:
            return
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            for year, month in missing:
                following = _next_month(year, month)
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS readings_p%04d%02d PARTITION OF readings FOR VALUES FROM (%d) TO (%d)"
                    % (year, month, _month_start(year, month), _month_start(*following))
                )
        self._months.update(missing)

    def partitions(self):
        """[(name, from unix time, to unix time)] of the readings partitions, oldest first."""
        with self._read("listing partitions") as conn:
            names = [row[0] for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'readings'::regclass ORDER BY c.relname")]
        found = []
        for name in names:
            match = PARTITION_NAME.match(name)
            if match:
                year, month = int(match.group(1)), int(match.group(2))
                found.append((name, _month_start(year, month), _month_start(*_next_month(year, month))))
        return found

    def delete_readings_before(self, when):
        """Drops the partitions that lie wholly before `when` (no row by row
        delete, no table bloat) and deletes the older rows of the one month
        that straddles it; returns how many readings went."""
        deleted = 0
        for name, lower, upper in self.partitions():
            if upper <= when:
                with self._write("dropping partition %s" % name) as conn:
                    deleted += conn.execute("SELECT COUNT(*) FROM %s" % name).fetchone()[0]
                    conn.execute("DROP TABLE %s" % name)
                match = PARTITION_NAME.match(name)
                self._months.discard((int(match.group(1)), int(match.group(2))))
            elif lower < when:
                with self._write("deleting old readings") as conn:
                    deleted += conn.execute("DELETE FROM %s WHERE received_at < %%s" % name, (when,)).rowcount
        return deleted

    def _connection(self):
        return self.conn

    def _in(self, values):
        return "= ANY(?)", (list(values),)

    # --- what PostgreSQL does its own way -------------------------------------------------

    def add_device(self, name, key=None, epoch=0, device_id=None):
        try:
            return super().add_device(name, key, epoch, device_id)
        except StorageUnavailable as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise device_exists(name)
            raise

    def _insert_command(self, conn, row):
        return self._exec(conn, INSERT_COMMAND + " RETURNING id", row).fetchone()[0]

    def _take_unsent(self, conn, device_id, now):
        return self._exec(
            conn, "UPDATE commands SET sent_at = ? WHERE device_id = ? AND sent_at IS NULL RETURNING id, opcode, argument",
            (now, device_id),
        ).fetchall()

    def _bump_host_seq(self, conn, device_id):
        return self._exec(
            conn, "UPDATE devices SET host_seq = host_seq + 1, version = version + 1 WHERE id = ? RETURNING host_seq",
            (device_id,),
        ).fetchone()[0]

    @contextmanager
    def ingest_transaction(self, device_ids, now=None):
        try:
            self._ensure_partitions(time.time() if now is None else now)
        except pg_errors.LockNotAvailable as exc:
            raise StorageBusy("database %s: another process is creating a partition" % self.location) from exc
        except psycopg.Error as exc:
            raise self._failure("creating a readings partition", exc) from exc
        with super().ingest_transaction(device_ids, now) as versions:
            yield versions

    def _insert_readings(self, conn, rows):
        with conn.cursor().copy(COPY_READINGS) as copy:
            for reading in rows:
                copy.write_row(reading)

    def _update_device_states(self, conn, rows):
        self._exec(conn, UPDATE_DEVICE_STATES, _columns(rows, 10))

    def _add_counts(self, conn, table, key, rows):
        self._exec(conn, ADD_COUNTS.format(table=table, key=key, rows=UNNEST_COUNTS), _columns(rows, 4))

    def _mark_commands_sent(self, conn, rows):
        self._exec(conn, MARK_COMMANDS_SENT, _columns(rows, 4))

    def _keep_acks(self, conn, rows):
        self._exec(conn, KEEP_ACKS, _columns(rows, 3))

    def count_rejection(self, device_id, reason):
        with self._write("counting a rejection") as conn:
            self._add_counts(conn, "rejections", "reason", [(device_id, reason, 1, time.time())])
