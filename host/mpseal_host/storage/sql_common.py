"""Queries both SQL backends run word for word, written once with `?`
placeholders; each backend's _sql() turns them into its driver's style
(sqlite3: as is; psycopg: %s, and a literal % doubled). What a backend must
provide: _read(what) and _write(what) (contexts yielding the connection,
driver errors turned into StorageUnavailable; _write one transaction),
_device_id(name_or_id, lock) (NoSuchDevice; lock: the row until commit),
_touch(db, id) (the change counter), _devices(where, params, tail) and VALUE
(the readings.value column as JSON text)."""
import time

from mpseal.packet import MAX_SEQ
from mpseal_host.storage.model import (
    KEY_CURRENT,
    KEY_PENDING,
    MAX_DEVICE_NAME,
    StorageError,
    check_key,
    device_name_problem,
    reading_dict,
    summarize_rejections,
)


# The host->device counter is reported from here on (stats, the page): acks
# use one per reading stored for the first time, so this is years away.
HOST_SEQ_WARN = MAX_SEQ - (1 << 24)


class SqlQueries:
    VALUE = "value"

    def _sql(self, text):
        return text

    def _rows(self, what, sql, params=()):
        with self._read(what) as db:
            return db.execute(self._sql(sql), params).fetchall()

    def _device_rows(self, what, name_or_id, sql, params=()):
        """Rows of a query about one device: `sql` takes its id first."""
        with self._read(what) as db:
            device_id = self._device_id(name_or_id)
            return db.execute(self._sql(sql), (device_id,) + tuple(params)).fetchall()

    # --- devices and keys --------------------------------------------------------

    def get_device(self, name_or_id):
        column = "d.id" if isinstance(name_or_id, int) else "d.name"
        found = self._devices(self._sql("WHERE %s = ?" % column), (name_or_id,))
        return found[0] if found else None

    def list_devices(self, after_id=None, limit=None):
        return self._devices(
            self._sql("WHERE d.id > ?"), (-1 if after_id is None else after_id,),
            "" if limit is None else " LIMIT %d" % int(limit),
        )

    def add_pending_key(self, name_or_id, epoch, key):
        check_key(key, epoch)
        with self._write("adding a key") as db:
            device_id = self._device_id(name_or_id, lock=True)
            current = db.execute(
                self._sql("SELECT epoch FROM device_keys WHERE device_id = ? AND state = 'current'"), (device_id,)
            ).fetchone()
            if current and current[0] == epoch:
                raise StorageError("epoch %d is the current one; a new key needs a new epoch" % epoch)
            db.execute(self._sql("DELETE FROM device_keys WHERE device_id = ? AND state = 'pending'"), (device_id,))
            db.execute(
                self._sql("INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)"),
                (device_id, epoch, bytes(key), KEY_PENDING, time.time()),
            )
            self._touch(db, device_id)

    def set_key(self, name_or_id, epoch, key):
        check_key(key, epoch)
        with self._write("setting a key") as db:
            device_id = self._device_id(name_or_id, lock=True)
            db.execute(self._sql("DELETE FROM device_keys WHERE device_id = ?"), (device_id,))
            db.execute(
                self._sql("INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)"),
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
            "SELECT seq, received_at, transport, format, " + self.VALUE + " FROM readings WHERE device_id = ? AND seq > ?"
            + where + " ORDER BY seq DESC LIMIT ?",
            params + [limit],
        )
        return [reading_dict(*row) for row in reversed(rows)]

    def readings_between(self, name_or_id, start=None, end=None, after_seq=0, limit=1000, max_points=None):
        # Arrival time is not indexed: this scans the device's readings by seq
        # (cheap per device; on PostgreSQL the month partitions prune it).
        where = "device_id = ? AND seq > ? AND received_at >= ? AND received_at < ?"
        with self._read("reading a time range") as db:
            params = [self._device_id(name_or_id), after_seq, -1e300 if start is None else start,
                      1e300 if end is None else end]
            thin = ""
            if max_points:
                count, first, last = db.execute(
                    self._sql("SELECT COUNT(*), MIN(seq), MAX(seq) FROM readings WHERE " + where), params
                ).fetchone()
                if count > max_points:
                    stride = -(-count // max_points)
                    thin = " AND ((seq - ?) %% %d = 0 OR seq = ?)" % stride
                    params += [first, last]
            rows = db.execute(
                self._sql("SELECT seq, received_at, transport, format, " + self.VALUE + " FROM readings WHERE "
                          + where + thin + " ORDER BY seq LIMIT ?"),
                params + [limit],
            ).fetchall()
        return [reading_dict(*row) for row in rows]

    def arrival_times(self, name_or_id, limit=20):
        rows = self._device_rows(
            "reading arrival times", name_or_id,
            "SELECT seq, received_at FROM readings WHERE device_id = ? ORDER BY seq DESC LIMIT ?", (limit,),
        )
        return [tuple(r) for r in rows]

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
            if db.execute(self._sql("SELECT 1 FROM api_tokens WHERE name = ?"), (name,)).fetchone():
                raise StorageError("a token named %r exists already (revoke it first or pick another name)" % name)
            db.execute(self._sql("INSERT INTO api_tokens VALUES (?, ?, ?, ?)"), (name, bytes(digest), scope, time.time()))

    def list_tokens(self):
        return [tuple(row) for row in self._rows("listing tokens", "SELECT name, scope, created_at FROM api_tokens ORDER BY name")]

    def revoke_token(self, name):
        with self._write("revoking a token") as db:
            if db.execute(self._sql("DELETE FROM api_tokens WHERE name = ?"), (name,)).rowcount == 0:
                raise StorageError("no token named %r (see 'mpseal token list')" % name)

    def token_scope(self, digest):
        rows = self._rows("checking a token", "SELECT name, scope FROM api_tokens WHERE digest = ?", (bytes(digest),))
        return None if not rows else (rows[0][0], rows[0][1])
