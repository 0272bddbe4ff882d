"""What both SQL backends do the same way, written once with `?`
placeholders: every statement goes through _exec()/_exec_many(), where the
backend's _sql() turns it into its driver's style (sqlite3: as is; psycopg:
%s, and a literal % doubled).

The differences between the dialects are class attributes (JSON_TEXT,
JSON_PARAM, ROW_LOCK, LOCK_FOR_NEW_ID, LATEST_JOIN, IDS_PER_QUERY) and a few
methods. Each backend provides:
- _read(what) and _write(what): contexts yielding the connection, driver
  errors turned into StorageUnavailable (_write: one transaction, a lock
  held elsewhere StorageBusy); _connection(): the one write_batch runs on;
- _insert_command, _take_unsent, _bump_host_seq: the RETURNING differences;
- _update_device_states: the batch's device rows in one or a few statements.
Portable forms here that PostgreSQL replaces: _in() ("IN (?, ...)" vs
"= ANY(array)") and the other bulk writes of a batch (_insert_readings,
_add_counts, _mark_commands_sent, _keep_acks: executemany vs COPY and
unnest() arrays)."""
import json
import time
from contextlib import contextmanager

from mpseal.control import CMD_ROTATE_KEY
from mpseal.packet import MAX_SEQ
from mpseal_host.storage.model import (
    KEY_CURRENT,
    KEY_PENDING,
    MAX_DEVICE_NAME,
    Device,
    StorageError,
    check_device_id,
    check_device_name,
    check_key,
    check_ttn_id,
    device_exists,
    device_name_problem,
    new_key,
    no_such_device,
    reading_dict,
    summarize_rejections,
)


# The host->device counter is reported from here on (stats, the page): acks
# use one per reading stored for the first time, so this is years away.
HOST_SEQ_WARN = MAX_SEQ - (1 << 24)
OTA_PLAN_KEY = "ota_plan"

# %s: d.allowed_numbers as JSON text (the backend's JSON_TEXT appended).
DEVICE_COLUMNS = (
    "d.id, d.name, k.epoch, k.master_key, p.epoch AS pending_epoch, d.created_at, d.replay_window,"
    " d.last_seq, d.last_seen, d.last_transport, d.host_seq, %s,"
    " d.received, d.stored, d.duplicates, d.rejected, d.version, d.ttn_id"
)
DEVICE_JOIN = (
    " FROM devices d JOIN device_keys k ON k.device_id = d.id AND k.state = 'current'"
    " LEFT JOIN device_keys p ON p.device_id = d.id AND p.state = 'pending' "
)
# The upsert of the rejection and event counters (table, key column); {rows}:
# where the rows come from (VALUES, or PostgreSQL's unnest of arrays).
ADD_COUNTS = (
    "INSERT INTO {table} (device_id, {key}, count, last_at) {rows}"
    " ON CONFLICT (device_id, {key}) DO UPDATE SET count = {table}.count + excluded.count, last_at = excluded.last_at"
)
INSERT_COMMAND = "INSERT INTO commands (device_id, opcode, argument, created_at) VALUES (?, ?, ?, ?)"
READING_COLUMNS = "readings (device_id, seq, received_at, transport, format, payload, value, ack, rssi, snr)"


def device_from_row(row):
    """A Device from a row of DEVICE_COLUMNS."""
    (id_, name, epoch, key, pending, created, window, last_seq, last_seen, last_transport, host_seq, numbers,
     received, stored, duplicates, rejected, version, ttn_id) = row
    return Device(id_, name, epoch, bytes(key), pending, created, bytes(window or b""), last_seq, last_seen,
                  last_transport, host_seq, json.loads(numbers), received, stored, duplicates, rejected, version, ttn_id)


class SqlQueries:
    JSON_TEXT = ""  # appended to a JSON column read as JSON text (PostgreSQL's jsonb: "::text")
    JSON_PARAM = "?"  # a parameter written into a JSON column (PostgreSQL: "?::jsonb")
    # Appended to a SELECT whose rows stay locked until commit. SQLite: none,
    # its BEGIN IMMEDIATE already holds the whole database.
    ROW_LOCK = ""
    LOCK_FOR_NEW_ID = None  # run first by add_device so two never pick the same next free id
    LATEST_JOIN = None  # " ... r ": devices d meet their last reading r (no row: NULLs)
    IDS_PER_QUERY = None  # at most this many values in one _in() (None: any number)

    def _sql(self, text):
        return text

    def _exec(self, db, sql, params=()):
        return db.execute(self._sql(sql), params)

    def _exec_many(self, db, sql, rows):
        db.executemany(self._sql(sql), rows)

    def _in(self, values):
        """(SQL, params) that match a column against `values`."""
        return "IN (%s)" % ",".join("?" * len(values)), list(values)

    def _id_sets(self, ids):
        """_in() for each slice of `ids` that one query takes (none when empty)."""
        ids = list(ids)
        size = self.IDS_PER_QUERY or max(len(ids), 1)
        for i in range(0, len(ids), size):
            yield self._in(ids[i : i + size])

    def _rows(self, what, sql, params=()):
        with self._read(what) as db:
            return self._exec(db, sql, params).fetchall()

    def _device_rows(self, what, name_or_id, sql, params=()):
        """Rows of a query about one device: `sql` takes its id first."""
        with self._read(what) as db:
            device_id = self._device_id(db, name_or_id)
            return self._exec(db, sql, (device_id,) + tuple(params)).fetchall()

    def _device_id(self, db, name_or_id, lock=False):
        """The id of a device by name or id (NoSuchDevice); lock: its row
        stays locked until the transaction commits."""
        column = "id" if isinstance(name_or_id, int) else "name"
        sql = "SELECT id FROM devices WHERE %s = ?%s" % (column, self.ROW_LOCK if lock else "")
        row = self._exec(db, sql, (name_or_id,)).fetchone()
        if row is None:
            raise no_such_device(name_or_id)
        return row[0]

    def _touch(self, db, device_id):
        """Bumps the device's change counter (caches of it reload)."""
        self._exec(db, "UPDATE devices SET version = version + 1 WHERE id = ?", (device_id,))

    # --- devices and keys --------------------------------------------------------

    def add_device(self, name, key=None, epoch=0, device_id=None):
        check_device_name(name)
        key = new_key() if key is None else key
        check_key(key, epoch)
        if device_id is not None:
            check_device_id(device_id)
        now = time.time()
        with self._write("adding a device") as db:
            if self.LOCK_FOR_NEW_ID:
                self._exec(db, self.LOCK_FOR_NEW_ID)
            if self._exec(db, "SELECT 1 FROM devices WHERE name = ?", (name,)).fetchone():
                raise device_exists(name)
            if device_id is None:
                device_id = self._exec(db, "SELECT COALESCE(MAX(id), 0) + 1 FROM devices").fetchone()[0]
                check_device_id(device_id)
            if self._exec(db, "SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
                raise device_exists("id %d" % device_id)
            # The change counter starts at the clock (µs), so a device removed and
            # added again under its id never matches a cache of the old one.
            self._exec(
                db, "INSERT INTO devices (id, name, created_at, version) VALUES (?, ?, ?, ?)",
                (device_id, name, now, time.time_ns() // 1000),
            )
            self._exec(db, "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)", (device_id, epoch, bytes(key), KEY_CURRENT, now))
        return self.get_device(device_id)

    def remove_device(self, name_or_id):
        with self._write("removing a device") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            # Readings by hand: PostgreSQL's partitioned readings have no
            # foreign key to cascade from (SQLite's would).
            for table in ("readings", "rejections", "device_events"):
                self._exec(db, "DELETE FROM %s WHERE device_id = ?" % table, (device_id,))
            self._exec(db, "DELETE FROM devices WHERE id = ?", (device_id,))  # keys, commands cascade

    def _devices(self, where="", params=(), tail=""):
        return [device_from_row(row) for row in self._rows(
            "listing devices", self._select_devices() + where + " ORDER BY d.id" + tail, params)]

    def _select_devices(self):
        return "SELECT " + DEVICE_COLUMNS % ("d.allowed_numbers" + self.JSON_TEXT) + DEVICE_JOIN

    def get_device(self, name_or_id):
        column = "d.id" if isinstance(name_or_id, int) else "d.name"
        found = self._devices("WHERE %s = ?" % column, (name_or_id,))
        return found[0] if found else None

    def list_devices(self, after_id=None, limit=None):
        return self._devices(
            "WHERE d.id > ?", (-1 if after_id is None else after_id,),
            "" if limit is None else " LIMIT %d" % int(limit),
        )

    def set_allowed_numbers(self, name_or_id, numbers):
        numbers = [str(n) for n in numbers]
        with self._write("setting allowed numbers") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            self._exec(
                db, "UPDATE devices SET allowed_numbers = %s, version = version + 1 WHERE id = ?" % self.JSON_PARAM,
                (json.dumps(numbers), device_id),
            )

    def set_ttn_id(self, name_or_id, ttn_id):
        check_ttn_id(ttn_id)
        with self._write("setting a TTN device id") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            if ttn_id is not None:
                taken = self._exec(db, "SELECT name FROM devices WHERE ttn_id = ? AND id != ?", (ttn_id, device_id)).fetchone()
                if taken:
                    raise StorageError("TTN device id %r belongs to device %r already" % (ttn_id, taken[0]))
            self._exec(db, "UPDATE devices SET ttn_id = ?, version = version + 1 WHERE id = ?", (ttn_id, device_id))

    def device_by_ttn_id(self, ttn_id):
        found = self._devices("WHERE d.ttn_id = ?", (ttn_id,))
        return found[0] if found else None

    def add_pending_key(self, name_or_id, epoch, key):
        check_key(key, epoch)
        with self._write("adding a key") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            current = self._exec(
                db, "SELECT epoch FROM device_keys WHERE device_id = ? AND state = 'current'", (device_id,)
            ).fetchone()
            if current and current[0] == epoch:
                raise StorageError("epoch %d is the current one; a new key needs a new epoch" % epoch)
            self._exec(db, "DELETE FROM device_keys WHERE device_id = ? AND state = 'pending'", (device_id,))
            self._exec(
                db, "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)",
                (device_id, epoch, bytes(key), KEY_PENDING, time.time()),
            )
            self._touch(db, device_id)

    def set_key(self, name_or_id, epoch, key):
        check_key(key, epoch)
        with self._write("setting a key") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            self._exec(db, "DELETE FROM device_keys WHERE device_id = ?", (device_id,))
            self._exec(
                db, "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)",
                (device_id, epoch, bytes(key), KEY_CURRENT, time.time()),
            )
            self._touch(db, device_id)

    def device_count(self):
        return self._rows("counting devices", "SELECT COUNT(*) FROM devices")[0][0]

    def device_keys(self, name_or_id):
        rows = self._device_rows(
            "reading keys", name_or_id,
            "SELECT epoch, master_key, state FROM device_keys WHERE device_id = ? ORDER BY state",
        )
        return [(epoch, bytes(key), state) for epoch, key, state in rows]

    # --- commands ------------------------------------------------------------------

    def queue_command(self, name_or_id, command):
        opcode, argument = command
        with self._write("queueing a command") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            command_id = self._insert_command(db, (device_id, opcode, bytes(argument), time.time()))
            self._touch(db, device_id)
        return command_id

    def take_commands(self, name_or_id):
        with self._write("taking commands") as db:
            device_id = self._device_id(db, name_or_id, lock=True)
            rows = self._take_unsent(db, device_id, time.time())
            self._touch(db, device_id)
        return [(opcode, bytes(argument)) for _, opcode, argument in sorted(rows)]

    def next_host_seq(self, name_or_id):
        with self._write("reserving a host sequence number") as db:
            return self._bump_host_seq(db, self._device_id(db, name_or_id, lock=True))

    def list_commands(self, name_or_id):
        rows = self._device_rows(
            "listing commands", name_or_id,
            "SELECT id, opcode, created_at, sent_at, sent_host_seq, acked_device_seq FROM commands"
            " WHERE device_id = ? ORDER BY id",
        )
        return [tuple(r) for r in rows]

    def unsent_commands(self, device_id):
        rows = self._rows(
            "reading commands",
            "SELECT id, opcode, argument FROM commands WHERE device_id = ? AND sent_at IS NULL ORDER BY id",
            (device_id,),
        )
        return [(i, op, bytes(arg)) for i, op, arg in rows]

    def last_sent_commands(self, opcode):
        rows = self._rows(
            "reading sent commands",
            "SELECT device_id, argument FROM commands WHERE id IN (SELECT MAX(id) FROM commands"
            " WHERE opcode = ? AND sent_at IS NOT NULL GROUP BY device_id)",
            (opcode,),
        )
        return {device_id: bytes(argument) for device_id, argument in rows}

    # --- the OTA plan (groups, pins, rollouts: mpseal_host.ota), one JSON value in meta

    def ota_plan(self):
        rows = self._rows("reading the OTA plan", "SELECT value FROM meta WHERE key = ?", (OTA_PLAN_KEY,))
        return json.loads(rows[0][0]) if rows else {}

    def change_ota_plan(self, change):
        with self._write("changing the OTA plan") as db:
            self._exec(db, "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (OTA_PLAN_KEY, "{}"))
            # An update first: on PostgreSQL it locks the row until commit,
            # so two changes never both read the old plan.
            self._exec(db, "UPDATE meta SET value = value WHERE key = ?", (OTA_PLAN_KEY,))
            row = self._exec(db, "SELECT value FROM meta WHERE key = ?", (OTA_PLAN_KEY,)).fetchone()
            plan = change(json.loads(row[0]))
            self._exec(db, "UPDATE meta SET value = ? WHERE key = ?", (json.dumps(plan, sort_keys=True), OTA_PLAN_KEY))
        return plan

    def latest_commands(self, opcode):
        rows = self._rows(
            "reading the latest commands",
            "SELECT device_id, argument, sent_at, acked_device_seq FROM commands WHERE id IN (SELECT MAX(id) FROM commands"
            " WHERE opcode = ? GROUP BY device_id)",
            (opcode,),
        )
        return {device_id: (bytes(argument), sent_at, acked_device_seq) for device_id, argument, sent_at, acked_device_seq in rows}

    # --- readings ------------------------------------------------------------------

    def stored_reading(self, device_id, seq):
        rows = self._rows(
            "looking up a reading", "SELECT payload, ack FROM readings WHERE device_id = ? AND seq = ? LIMIT 1",
            (device_id, seq),
        )
        if not rows:
            return None
        payload, ack = rows[0]
        return bytes(payload), None if ack is None else bytes(ack)

    def count_readings(self, name_or_id):
        return self._device_rows(
            "counting readings", name_or_id, "SELECT COUNT(*) FROM readings WHERE device_id = ?"
        )[0][0]

    def readings(self, name_or_id, since=None, limit=100, from_time=None, to_time=None):
        where, params = "", [0 if since is None else since]
        if from_time is not None:
            where += " AND received_at >= ?"
            params.append(from_time)
        if to_time is not None:
            where += " AND received_at < ?"
            params.append(to_time)
        rows = self._device_rows(
            "reading readings", name_or_id,
            "SELECT seq, received_at, transport, format, value" + self.JSON_TEXT + ", rssi, snr FROM readings WHERE device_id = ? AND seq > ?"
            + where + " ORDER BY seq DESC LIMIT ?",
            params + [limit],
        )
        return [reading_dict(*row) for row in reversed(rows)]

    def readings_between(self, name_or_id, start=None, end=None, after_seq=0, limit=1000, max_points=None):
        # Arrival time is not indexed: this scans the device's readings by seq
        # (cheap per device; on PostgreSQL the month partitions prune it).
        where = "device_id = ? AND seq > ? AND received_at >= ? AND received_at < ?"
        with self._read("reading a time range") as db:
            params = [self._device_id(db, name_or_id), after_seq, -1e300 if start is None else start,
                      1e300 if end is None else end]
            thin = ""
            if max_points:
                count, first, last = self._exec(
                    db, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM readings WHERE " + where, params
                ).fetchone()
                if count > max_points:
                    stride = -(-count // max_points)
                    thin = " AND ((seq - ?) %% %d = 0 OR seq = ?)" % stride
                    params += [first, last]
            rows = self._exec(
                db, "SELECT seq, received_at, transport, format, value" + self.JSON_TEXT + ", rssi, snr FROM readings WHERE "
                + where + thin + " ORDER BY seq LIMIT ?",
                params + [limit],
            ).fetchall()
        return [reading_dict(*row) for row in rows]

    def arrival_times(self, name_or_id, limit=20):
        rows = self._device_rows(
            "reading arrival times", name_or_id,
            "SELECT seq, received_at FROM readings WHERE device_id = ? ORDER BY seq DESC LIMIT ?", (limit,),
        )
        return [tuple(r) for r in rows]

    def _latest(self, where="", params=()):
        rows = self._rows(
            "reading latest readings",
            "SELECT d.name, r.seq, r.received_at, r.transport, r.format, r.value" + self.JSON_TEXT + ", r.rssi, r.snr FROM devices d"
            + self.LATEST_JOIN + where + " ORDER BY d.id",
            params,
        )
        return {row[0]: None if row[1] is None else reading_dict(*row[1:]) for row in rows}

    def latest_readings(self, names=None):
        if names is None:
            return self._latest()
        names = list(names)
        if not names:
            return {}
        match, params = self._in(names)
        return self._latest("WHERE d.name " + match, params)

    def _latest_readings_of_ids(self, lo, hi):
        return self._latest("WHERE d.id BETWEEN ? AND ?", (lo, hi))

    # --- ingest ----------------------------------------------------------------------

    @contextmanager
    def ingest_transaction(self, device_ids, now=None):
        """The batch's device rows, locked in id order (no deadlock between
        receivers) until the commit: {id: change counter}."""
        with self._write("storing a batch") as db:
            versions = {}
            for match, params in self._id_sets(device_ids):
                versions.update(self._exec(
                    db, "SELECT id, version FROM devices WHERE id " + match + " ORDER BY id" + self.ROW_LOCK, params
                ).fetchall())
            yield versions

    def ingest_states(self, device_ids):
        states = []
        with self._read("loading device state") as db:
            for match, params in self._id_sets(device_ids):
                devices = [device_from_row(r) for r in self._exec(db, self._select_devices() + "WHERE d.id " + match, params)]
                keys = {}
                for device_id, epoch, key, state in self._exec(
                    db, "SELECT device_id, epoch, master_key, state FROM device_keys WHERE device_id " + match, params
                ):
                    keys.setdefault(device_id, []).append((epoch, bytes(key), state))
                with_commands = {row[0] for row in self._exec(
                    db, "SELECT DISTINCT device_id FROM commands WHERE sent_at IS NULL AND device_id " + match, params)}
                states.extend((d, keys.get(d.id, []), d.id in with_commands) for d in devices)
        return states

    def write_batch(self, batch):
        """What an ingest batch changed, inside its ingest_transaction. Rows
        that several receivers may touch go in one order (sorted): no
        deadlock between them."""
        db = self._connection()
        if batch.readings:
            self._insert_readings(db, batch.readings)
        states = [
            (s.id, s.window.to_bytes(), s.last_seq, s.last_seen, s.last_transport, s.host_seq,
             s.delta_received, s.delta_stored, s.delta_duplicates, s.delta_rejected)
            for s in batch.devices.values()
        ]
        if states:
            self._update_device_states(db, states)
        if batch.rejections:
            self._add_counts(db, "rejections", "reason",
                             [(d, reason, n, batch.now) for (d, reason), n in sorted(batch.rejections.items())])
        if batch.commands_sent:  # (sent_at, sent_host_seq, acked_device_seq, command id)
            self._mark_commands_sent(db, batch.commands_sent)
        acks_kept = getattr(batch, "acks_kept", ())  # (ack, device_id, seq): acks sealed for readings stored without one
        if acks_kept:
            self._keep_acks(db, acks_kept)
        events = getattr(batch, "events", None)  # {(device_id, event): n}
        if events:
            self._add_counts(db, "device_events", "event", [(d, e, n, batch.now) for (d, e), n in sorted(events.items())])
        for device_id, epoch in sorted(batch.promotions.items()):
            self._exec(db, "DELETE FROM device_keys WHERE device_id = ? AND epoch != ?", (device_id, epoch))
            self._exec(db, "UPDATE device_keys SET state = 'current' WHERE device_id = ?", (device_id,))
            # The device uses the new key: the rotate-key commands that carried
            # it are applied, and their argument (epoch + the key) goes.
            self._exec(
                db, "UPDATE commands SET argument = ? WHERE device_id = ? AND opcode = ? AND sent_at IS NOT NULL",
                (b"", device_id, CMD_ROTATE_KEY),
            )

    # The bulk writes of write_batch, row by row (portable); PostgreSQL
    # overrides them with COPY and unnest() arrays, one statement each.

    def _insert_readings(self, db, rows):
        self._exec_many(db, "INSERT INTO " + READING_COLUMNS + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _add_counts(self, db, table, key, rows):
        """rows: (device_id, key, n, at); n is added to the count."""
        self._exec_many(db, ADD_COUNTS.format(table=table, key=key, rows="VALUES (?, ?, ?, ?)"), rows)

    def _mark_commands_sent(self, db, rows):
        self._exec_many(db, "UPDATE commands SET sent_at = ?, sent_host_seq = ?, acked_device_seq = ? WHERE id = ?", rows)

    def _keep_acks(self, db, rows):
        self._exec_many(db, "UPDATE readings SET ack = ? WHERE device_id = ? AND seq = ?", rows)

    # --- counters ------------------------------------------------------------------

    def _rejection_rows(self, lo=None, hi=None):
        where, params = "", ()
        if lo is not None:
            where, params = " WHERE r.device_id BETWEEN ? AND ?", (lo, hi)
        return self._rows(
            "reading rejection counts",
            "SELECT d.name, r.reason, r.count FROM rejections r LEFT JOIN devices d ON d.id = r.device_id"
            + where + " ORDER BY r.reason",
            params,
        )

    def event_counts(self):
        rows = self._rows(
            "reading device events",
            "SELECT d.name, e.event, e.count FROM device_events e LEFT JOIN devices d ON d.id = e.device_id"
            " ORDER BY e.event",
        )
        return summarize_rejections(rows)[1]

    def _fleet_sums(self):
        sums = self._rows(
            "reading stats",
            "SELECT COUNT(*), COALESCE(SUM(received), 0), COALESCE(SUM(stored), 0), COALESCE(SUM(duplicates), 0)"
            " FROM devices",
        )[0]
        return [int(x) for x in sums]

    def counter_warnings(self):
        rows = self._rows("reading counters", "SELECT name, last_seq, host_seq FROM devices ORDER BY id")
        warnings = {}
        for name, last_seq, host_seq in rows:
            if last_seq >= MAX_SEQ:
                warnings[name] = "device sequence numbers used up (2**32-1): the board stopped sealing; re-provision it"
            elif host_seq >= HOST_SEQ_WARN:
                warnings[name] = "host->device sequence at %d of %d: re-provision the device before it runs out" % (
                    host_seq, MAX_SEQ)
        return warnings

    # --- API tokens (mpseal token; checked by mpseal_host.access) -----------------

    def add_token(self, name, digest, scope):
        if device_name_problem(name):  # the same rule keeps token names printable and short
            raise StorageError("a token name is 1..%d letters, digits, '-', '_' or '.'" % MAX_DEVICE_NAME)
        with self._write("adding a token") as db:
            if self._exec(db, "SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise StorageError("a token named %r exists already (revoke it first or pick another name)" % name)
            self._exec(db, "INSERT INTO api_tokens VALUES (?, ?, ?, ?)", (name, bytes(digest), scope, time.time()))

    def list_tokens(self):
        return [tuple(row) for row in self._rows("listing tokens", "SELECT name, scope, created_at FROM api_tokens ORDER BY name")]

    def revoke_token(self, name):
        with self._write("revoking a token") as db:
            if self._exec(db, "DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount == 0:
                raise StorageError("no token named %r (see 'mpseal token list')" % name)

    def token_scope(self, digest):
        rows = self._rows("checking a token", "SELECT name, scope FROM api_tokens WHERE digest = ?", (bytes(digest),))
        return None if not rows else (rows[0][0], rows[0][1])
