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

Readings are partitioned by calendar month (UTC) on received_at; writers
create the partition of the current and the next month ahead of time, and
delete_readings_before() drops whole partitions.
"""
import calendar
import json
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg
from psycopg import errors as pg_errors

from mpseal.control import CMD_ROTATE_KEY
from mpseal_host.storage import migrations_postgres
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
    newer_schema,
    no_such_device,
    reading_dict,
)

SCHEMA_VERSION = migrations_postgres.SCHEMA_VERSION
PARTITION_LOCK = 4740_0002  # pg_advisory_xact_lock key: creating partitions
PARTITION_NAME = re.compile(r"^readings_p(\d{4})(\d{2})$")
COPY_READINGS = "COPY readings (device_id, seq, received_at, transport, format, payload, value, ack) FROM STDIN"
COUNT_EVENTS = (
    "INSERT INTO device_events (device_id, event, count, last_at)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::float8[])"
    " ON CONFLICT (device_id, event) DO UPDATE SET count = device_events.count + excluded.count, last_at = excluded.last_at"
)
DEVICE_COLUMNS = (
    "d.id, d.name, k.epoch, k.master_key, p.epoch, d.created_at, d.replay_window,"
    " d.last_seq, d.last_seen, d.last_transport, d.host_seq, d.allowed_numbers::text,"
    " d.received, d.stored, d.duplicates, d.rejected, d.version"
)
DEVICE_JOIN = (
    " FROM devices d JOIN device_keys k ON k.device_id = d.id AND k.state = 'current'"
    " LEFT JOIN device_keys p ON p.device_id = d.id AND p.state = 'pending' "
)
COUNT_REJECTIONS = (
    "INSERT INTO rejections (device_id, reason, count, last_at)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::float8[])"
    " ON CONFLICT (device_id, reason) DO UPDATE SET count = rejections.count + excluded.count, last_at = excluded.last_at"
)


def _device(row):
    (id_, name, epoch, key, pending, created, window, last_seq, last_seen, last_transport, host_seq, numbers,
     received, stored, duplicates, rejected, version) = row
    return Device(id_, name, epoch, bytes(key), pending, created, bytes(window or b""), last_seq, last_seen,
                  last_transport, host_seq, json.loads(numbers), received, stored, duplicates, rejected, version)


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
    VALUE = "value::text"  # jsonb as the JSON text the shared queries decode

    def _sql(self, text):
        return text.replace("%", "%%").replace("?", "%s")

    def __init__(self, url, serving=False, connect_timeout=10, read_only=False):
        """read_only: a session for queries only (the receiver's API read
        pool): no migrations, no partitions, every transaction read-only."""
        self.url = self.connect_location = url
        self.location = _safe_location(url)
        self._months = set()  # (year, month) partitions known to exist
        self._in_batch = False
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
        """No lock_timeout here: the device row locks N receivers take in turn
        are the design (each batch waits for the one before, then reloads
        what it changed); a timeout would turn that ordinary contention into
        retries and lock-wait mode. A LockNotAvailable (an operator's own
        lock_timeout) still comes out as StorageBusy."""
        self.busy_timeout = seconds

    @contextmanager
    def _write(self, what):
        try:
            with self.conn.transaction():
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

    # --- devices -----------------------------------------------------------------

    def _device_id(self, name_or_id, lock=False):
        column = "id" if isinstance(name_or_id, int) else "name"
        row = self.conn.execute(
            "SELECT id FROM devices WHERE %s = %%s%s" % (column, " FOR UPDATE" if lock else ""), (name_or_id,)
        ).fetchone()
        if row is None:
            raise no_such_device(name_or_id)
        return row[0]

    def _touch(self, conn, device_id):
        conn.execute("UPDATE devices SET version = version + 1 WHERE id = %s", (device_id,))

    def add_device(self, name, key=None, epoch=0, device_id=None):
        check_device_name(name)
        key = new_key() if key is None else key
        check_key(key, epoch)
        if device_id is not None:
            check_device_id(device_id)
        now = time.time()
        try:
            with self._write("adding a device") as conn:
                conn.execute("LOCK TABLE devices IN SHARE ROW EXCLUSIVE MODE")  # the next free id, once
                if conn.execute("SELECT 1 FROM devices WHERE name = %s", (name,)).fetchone():
                    raise device_exists(name)
                if device_id is None:
                    device_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM devices").fetchone()[0]
                    check_device_id(device_id)
                if conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,)).fetchone():
                    raise device_exists("id %d" % device_id)
                conn.execute(
                    "INSERT INTO devices (id, name, created_at, version) VALUES (%s, %s, %s, %s)",
                    (device_id, name, now, time.time_ns() // 1000),
                )
                conn.execute(
                    "INSERT INTO device_keys VALUES (%s, %s, %s, %s, %s)", (device_id, epoch, bytes(key), KEY_CURRENT, now)
                )
        except StorageUnavailable as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise device_exists(name)
            raise
        return self.get_device(device_id)

    def remove_device(self, name_or_id):
        with self._write("removing a device") as conn:
            device_id = self._device_id(name_or_id, lock=True)
            conn.execute("DELETE FROM readings WHERE device_id = %s", (device_id,))
            conn.execute("DELETE FROM rejections WHERE device_id = %s", (device_id,))
            conn.execute("DELETE FROM device_events WHERE device_id = %s", (device_id,))
            conn.execute("DELETE FROM devices WHERE id = %s", (device_id,))  # keys, commands cascade

    def _devices(self, where="", params=(), tail=""):
        with self._read("listing devices") as conn:
            rows = conn.execute("SELECT " + DEVICE_COLUMNS + DEVICE_JOIN + where + " ORDER BY d.id" + tail, params).fetchall()
        return [_device(row) for row in rows]

    # --- keys ------------------------------------------------------------------------

    def set_allowed_numbers(self, name_or_id, numbers):
        numbers = [str(n) for n in numbers]
        with self._write("setting allowed numbers") as conn:
            device_id = self._device_id(name_or_id, lock=True)
            conn.execute(
                "UPDATE devices SET allowed_numbers = %s::jsonb, version = version + 1 WHERE id = %s",
                (json.dumps(numbers), device_id),
            )

    # --- downlink --------------------------------------------------------------------

    def queue_command(self, name_or_id, command):
        opcode, argument = command
        with self._write("queueing a command") as conn:
            device_id = self._device_id(name_or_id, lock=True)
            row = conn.execute(
                "INSERT INTO commands (device_id, opcode, argument, created_at) VALUES (%s, %s, %s, %s) RETURNING id",
                (device_id, opcode, bytes(argument), time.time()),
            ).fetchone()
            self._touch(conn, device_id)
        return row[0]

    def take_commands(self, name_or_id):
        with self._write("taking commands") as conn:
            device_id = self._device_id(name_or_id, lock=True)
            rows = conn.execute(
                "UPDATE commands SET sent_at = %s WHERE device_id = %s AND sent_at IS NULL RETURNING id, opcode, argument",
                (time.time(), device_id),
            ).fetchall()
            self._touch(conn, device_id)
        return [(opcode, bytes(argument)) for _, opcode, argument in sorted(rows)]

    def next_host_seq(self, name_or_id):
        with self._write("reserving a host sequence number") as conn:
            device_id = self._device_id(name_or_id, lock=True)
            return conn.execute(
                "UPDATE devices SET host_seq = host_seq + 1, version = version + 1 WHERE id = %s RETURNING host_seq",
                (device_id,),
            ).fetchone()[0]

    # --- ingest ------------------------------------------------------------------------

    @contextmanager
    def ingest_transaction(self, device_ids, now=None):
        try:
            self._ensure_partitions(time.time() if now is None else now)
        except pg_errors.LockNotAvailable as exc:
            raise StorageBusy("database %s: another process is creating a partition" % self.location) from exc
        except psycopg.Error as exc:
            raise self._failure("creating a readings partition", exc) from exc
        with self._write("storing a batch") as conn:
            rows = conn.execute(
                "SELECT id, version FROM devices WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(device_ids),)
            ).fetchall()
            yield dict(rows)

    def ingest_states(self, device_ids):
        ids = list(device_ids)
        with self._read("loading device state") as conn:
            devices = [_device(r) for r in conn.execute(
                "SELECT " + DEVICE_COLUMNS + DEVICE_JOIN + "WHERE d.id = ANY(%s)", (ids,))]
            keys = {}
            for device_id, epoch, key, state in conn.execute(
                "SELECT device_id, epoch, master_key, state FROM device_keys WHERE device_id = ANY(%s)", (ids,)
            ):
                keys.setdefault(device_id, []).append((epoch, bytes(key), state))
            with_commands = {row[0] for row in conn.execute(
                "SELECT DISTINCT device_id FROM commands WHERE sent_at IS NULL AND device_id = ANY(%s)", (ids,))}
        return [(d, keys.get(d.id, []), d.id in with_commands) for d in devices]

    def write_batch(self, batch):
        conn = self.conn
        if batch.readings:
            with conn.cursor().copy(COPY_READINGS) as copy:
                for reading in batch.readings:
                    copy.write_row(reading)
        states = list(batch.devices.values())
        if states:
            conn.execute(
                "UPDATE devices d SET replay_window = v.w, last_seq = v.ls, last_seen = v.seen,"
                " last_transport = v.tr, host_seq = v.hs, received = d.received + v.dr, stored = d.stored + v.ds,"
                " duplicates = d.duplicates + v.dd, rejected = d.rejected + v.dj, version = d.version + 1"
                " FROM unnest(%s::bigint[], %s::bytea[], %s::bigint[], %s::float8[], %s::text[], %s::bigint[],"
                " %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, w, ls, seen, tr, hs, dr, ds, dd, dj)"
                " WHERE d.id = v.id",
                (
                    [s.id for s in states],
                    [s.window.to_bytes() for s in states],
                    [s.last_seq for s in states],
                    [s.last_seen for s in states],
                    [s.last_transport for s in states],
                    [s.host_seq for s in states],
                    [s.delta_received for s in states],
                    [s.delta_stored for s in states],
                    [s.delta_duplicates for s in states],
                    [s.delta_rejected for s in states],
                ),
            )
        if batch.rejections:
            keys = sorted(batch.rejections)  # one order in every receiver: no deadlock on the shared rows
            conn.execute(
                COUNT_REJECTIONS,
                ([k[0] for k in keys], [k[1] for k in keys], [batch.rejections[k] for k in keys], [batch.now] * len(keys)),
            )
        if batch.commands_sent:
            sent = batch.commands_sent
            conn.execute(
                "UPDATE commands c SET sent_at = v.at, sent_host_seq = v.hs, acked_device_seq = v.ds"
                " FROM unnest(%s::float8[], %s::bigint[], %s::bigint[], %s::bigint[]) AS v(at, hs, ds, id)"
                " WHERE c.id = v.id",
                ([r[0] for r in sent], [r[1] for r in sent], [r[2] for r in sent], [r[3] for r in sent]),
            )
        acks_kept = getattr(batch, "acks_kept", ())  # (ack, device_id, seq)
        if acks_kept:
            conn.execute(
                "UPDATE readings r SET ack = v.ack FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[]) AS v(ack, d, s)"
                " WHERE r.device_id = v.d AND r.seq = v.s",
                ([a for a, _, _ in acks_kept], [d for _, d, _ in acks_kept], [q for _, _, q in acks_kept]),
            )
        events = getattr(batch, "events", None)  # {(device_id, event): n}
        if events:
            keys = sorted(events)
            conn.execute(
                COUNT_EVENTS,
                ([k[0] for k in keys], [k[1] for k in keys], [events[k] for k in keys], [batch.now] * len(keys)),
            )
        for device_id, epoch in sorted(batch.promotions.items()):
            conn.execute("DELETE FROM device_keys WHERE device_id = %s AND epoch != %s", (device_id, epoch))
            conn.execute("UPDATE device_keys SET state = 'current' WHERE device_id = %s", (device_id,))
            # The device uses the new key: the rotate-key commands that carried
            # it are applied, and their argument (epoch + the key) goes.
            conn.execute(
                "UPDATE commands SET argument = %s WHERE device_id = %s AND opcode = %s AND sent_at IS NOT NULL",
                (b"", device_id, CMD_ROTATE_KEY),
            )

    def count_rejection(self, device_id, reason):
        with self._write("counting a rejection") as conn:
            conn.execute(COUNT_REJECTIONS, ([device_id], [reason], [1], [time.time()]))

    # --- queries -------------------------------------------------------------------------

    def _latest(self, where="", params=()):
        with self._read("reading latest readings") as conn:
            rows = conn.execute(
                "SELECT d.name, r.seq, r.received_at, r.transport, r.format, r.value::text FROM devices d"
                " LEFT JOIN LATERAL (SELECT * FROM readings x WHERE x.device_id = d.id AND x.seq = d.last_seq LIMIT 1) r"
                " ON true " + where + " ORDER BY d.id",
                params,
            ).fetchall()
        return {row[0]: None if row[1] is None else reading_dict(*row[1:]) for row in rows}

    def latest_readings(self, names=None):
        if names is None:
            return self._latest()
        return self._latest("WHERE d.name = ANY(%s)", (list(names),))

    def _latest_readings_of_ids(self, lo, hi):
        return self._latest("WHERE d.id BETWEEN %s AND %s", (lo, hi))
