"""The storage contract: every operation the receiver, the CLI and the API
need, with no SQL and no driver in sight. Backends (sqlite.py, postgres.py)
subclass Storage and implement every method; callers only ever see the
records and typed errors of model.py.

Threading: a Storage object is ONE database connection. Use it from one
thread at a time (the receiver's writer thread owns one; each API reader
opens its own). Methods are synchronous and block; callers that run an
event loop call them from a thread.

Ingest (the only multi-step write) goes like this, on one object:

    with storage.ingest_transaction(device_ids) as versions:
        # versions: {device id: change counter} for those ids that are
        # registered; the rows are locked until the block ends, so no other
        # process (receiver, sms-ingest, CLI) can move their replay windows.
        stale = [i for i, v in versions.items() if cached_version(i) != v]
        for device, keys, has_commands in storage.ingest_states(stale): ...
        ... storage.stored_reading(), unsent_commands() ...
        storage.write_batch(batch)
    # leaving the block commits (or rolls back and raises StorageError);
    # only now may acks be sent. Every device in batch.devices had its change
    # counter raised by exactly 1 (the caller adds 1 to its cached copy).

A device's change counter (`Device.version`) rises with every write that
touches the device (a batch, a key, a command, a host seq), so a cache in
another process refreshes exactly the devices that changed: a foreign write
costs O(changed devices), never a full reload.
"""
import abc

from mpseal_host.storage.model import stats_from, summarize_rejections


class Storage(abc.ABC):
    #: Where the data lives, for log lines and /healthz (never a password).
    location = ""
    #: What open_storage() needs to open the same database again (the API's
    #: read-only workers): may hold a password, so never logged.
    connect_location = ""

    # --- lifecycle ------------------------------------------------------------

    @abc.abstractmethod
    def close(self):
        """Closes the connection; the object is unusable afterwards."""

    @abc.abstractmethod
    def check(self):
        """Round trip to the database; raises StorageError when it is gone."""

    @abc.abstractmethod
    def set_busy_timeout(self, seconds):
        """How long a write waits for another process's lock before it raises
        StorageBusy (nothing written; the receiver's writer retries)."""

    @abc.abstractmethod
    def schema_version(self):
        """The schema version the database is at (after migrations ran)."""

    @abc.abstractmethod
    def change_token(self):
        """An opaque value that changes whenever stored data changes (any
        process). The live page polls it and refetches only on a change."""

    # --- devices --------------------------------------------------------------

    @abc.abstractmethod
    def add_device(self, name, key=None, epoch=0, device_id=None):
        """Registers a device; key None generates one; device_id None takes
        the next free id. Returns the Device. DeviceExists, StorageError."""

    @abc.abstractmethod
    def remove_device(self, name_or_id):
        """Removes the device with its keys, readings, commands, counters."""

    @abc.abstractmethod
    def get_device(self, name_or_id):
        """The Device by name (str) or id (int), or None."""

    @abc.abstractmethod
    def list_devices(self, after_id=None, limit=None):
        """Devices ordered by id; `after_id`/`limit` page through a fleet."""

    @abc.abstractmethod
    def device_count(self):
        """How many devices are registered."""

    # --- keys -----------------------------------------------------------------

    @abc.abstractmethod
    def device_keys(self, name_or_id):
        """[(epoch, key bytes, 'current'|'pending')]: current first."""

    @abc.abstractmethod
    def add_pending_key(self, name_or_id, epoch, key):
        """Starts a rotation: both epochs are accepted until the first packet
        under `epoch` promotes it (in that packet's batch)."""

    @abc.abstractmethod
    def set_key(self, name_or_id, epoch, key):
        """Replaces every key of the device with this one (re-provisioning)."""

    @abc.abstractmethod
    def set_ttn_id(self, name_or_id, ttn_id):
        """Maps The Things Network end device id `ttn_id` (None: no mapping)
        to the device; StorageError when another device has it."""

    @abc.abstractmethod
    def device_by_ttn_id(self, ttn_id):
        """The Device whose TTN end device id is `ttn_id`, or None."""

    @abc.abstractmethod
    def set_allowed_numbers(self, name_or_id, numbers):
        """SMS senders the device's packets may come from ([] = any)."""

    # --- downlink -------------------------------------------------------------

    @abc.abstractmethod
    def queue_command(self, name_or_id, command):
        """command: (opcode, argument bytes). Returns the command id; it
        rides on the next ack to the device (delivered once, whichever
        receiver sees the device's next reading)."""

    @abc.abstractmethod
    def list_commands(self, name_or_id):
        """[(id, opcode, created_at, sent_at, sent_host_seq, acked_device_seq)]
        (no arguments: a rotate-key argument holds a key)."""

    @abc.abstractmethod
    def take_commands(self, name_or_id):
        """Unsent commands as [(opcode, argument)], marked sent, for a
        downlink that is not an ack (an SMS command packet)."""

    @abc.abstractmethod
    def next_host_seq(self, name_or_id):
        """Reserves (commits) and returns the next host->device seq."""

    # --- ingest (see the module docstring) --------------------------------------

    @abc.abstractmethod
    def ingest_transaction(self, device_ids, now=None):
        """Context manager: one write transaction with the rows of
        `device_ids` locked; yields {id: change counter} of the registered
        ones. `now`: the batch's receive time (where its readings go). Commits on exit; on any error rolls back and raises (driver
        errors as StorageError)."""

    @abc.abstractmethod
    def ingest_states(self, device_ids):
        """[(Device, [(epoch, key, state)], has_unsent_commands)] for the
        registered ones among `device_ids` (a cache refresh)."""

    @abc.abstractmethod
    def stored_reading(self, device_id, seq):
        """(payload bytes, ack bytes or None) of a stored reading, or None."""

    @abc.abstractmethod
    def unsent_commands(self, device_id):
        """[(id, opcode, argument)] not yet sent, oldest first."""

    @abc.abstractmethod
    def write_batch(self, batch):
        """Persists a pipeline.Batch inside ingest_transaction: readings
        (model.NewReading, value already decoded, with the sealed ack when
        the pipeline keeps one), device states (one statement), rejection
        counts, commands sent, key promotions; and, when the batch has them,
        `acks_kept` [(ack, device_id, seq)] for readings stored without an
        ack and `events` {(device_id, event): n}."""

    @abc.abstractmethod
    def count_rejection(self, device_id, reason):
        """Counts one refusal that never reached the pipeline (its own
        short transaction)."""

    # --- queries (API, `mpseal stats`) ------------------------------------------

    @abc.abstractmethod
    def readings(self, name_or_id, since=None, limit=100, from_time=None, to_time=None):
        """The newest `limit` readings with seq > `since` and received_at in
        [from_time, to_time), oldest first: [{seq, received_at, transport,
        format, value}] (value as decoded at ingest; `rssi` and `snr` too
        when the reading came over a link that reports them). NoSuchDevice."""

    @abc.abstractmethod
    def readings_between(self, name_or_id, start=None, end=None, after_seq=0, limit=1000, max_points=None):
        """Readings that arrived in [start, end) (unix seconds, None = open)
        with seq > `after_seq`, oldest first, at most `limit` (page on with
        after_seq = the last seq). With `max_points`, a range holding more is
        thinned to every k-th seq (charts), the newest always kept."""

    @abc.abstractmethod
    def arrival_times(self, name_or_id, limit=20):
        """[(seq, received_at)] of the device's newest `limit` readings,
        newest first (its reporting interval is estimated from them)."""

    @abc.abstractmethod
    def last_sent_commands(self, opcode):
        """{device id: argument bytes} of the newest command with `opcode`
        that went out in an ack, per device."""

    @abc.abstractmethod
    def ota_plan(self):
        """The OTA plan (groups, pins, rollouts; mpseal_host.ota) as a dict, {} when none."""

    @abc.abstractmethod
    def change_ota_plan(self, change):
        """plan = change(plan) in one write transaction (no lost update
        between two writers); returns the new plan."""

    @abc.abstractmethod
    def latest_commands(self, opcode):
        """{device_id: (argument, sent_at or None, acked_device_seq or None)}
        of the newest command with `opcode` per device, sent or still
        queued (the OTA view: the update offered last and whether it went out)."""

    @abc.abstractmethod
    def latest_readings(self, names=None):
        """{device name: its reading with the highest seq, or None} for
        every device (or those named)."""

    def rejection_counts(self):
        """(totals {reason: n}, {device name or '(unregistered)': {reason: n}})."""
        return summarize_rejections(self._rejection_rows())

    @abc.abstractmethod
    def event_counts(self):
        """{device name or '(unregistered)': {event: n}}: Batch.events
        (what happened to a device that is no refusal)."""

    def device_summaries(self, after_id=None, limit=100):
        """A page of devices for the API: [Device.public() + latest +
        rejected_by_reason], three queries whatever the fleet."""
        devices = self.list_devices(after_id, limit)
        if not devices:
            return []
        lo, hi = devices[0].id, devices[-1].id
        latest = self._latest_readings_of_ids(lo, hi)
        rejected = summarize_rejections(self._rejection_rows(lo, hi))[1]
        summaries = []
        for device in devices:
            info = device.public()
            info["latest"] = latest.get(device.name)
            info["rejected_by_reason"] = rejected.get(device.name, {})
            summaries.append(info)
        return summaries

    def stats(self):
        """Fleet totals for `mpseal stats` and /api/stats."""
        totals, per_device = self.rejection_counts()
        stats = stats_from(self._fleet_sums(), totals, per_device)
        stats["events_by_device"] = self.event_counts()
        stats["counter_warnings"] = self.counter_warnings()
        return stats

    @abc.abstractmethod
    def counter_warnings(self):
        """{device name: text} for counters near 2**32-1 (docs/protocol.md section 5)."""

    # --- what the composed queries above need from a backend ---------------------

    @abc.abstractmethod
    def _rejection_rows(self, lo=None, hi=None):
        """[(device name or None, reason, count)], devices lo..hi when given."""

    @abc.abstractmethod
    def _latest_readings_of_ids(self, lo, hi):
        """latest_readings() for the devices with ids lo..hi."""

    @abc.abstractmethod
    def _fleet_sums(self):
        """(devices, received, stored, duplicates) over the fleet, as ints."""

    @abc.abstractmethod
    def count_readings(self, name_or_id):
        """How many readings of the device are stored."""

    # --- API tokens (`mpseal token`; only SHA-256 digests are stored) -----------

    @abc.abstractmethod
    def add_token(self, name, digest, scope):
        """scope 'read' or 'admin'; StorageError when the name is taken."""

    @abc.abstractmethod
    def list_tokens(self):
        """[(name, scope, created_at)]; never the digests."""

    @abc.abstractmethod
    def revoke_token(self, name):
        """StorageError when there is no such token."""

    @abc.abstractmethod
    def token_scope(self, digest):
        """(name, scope) of the token with this SHA-256, or None."""

    # --- upkeep -----------------------------------------------------------------

    @abc.abstractmethod
    def delete_readings_before(self, when):
        """Retention: removes readings received before `when` (unix time) and
        returns how many; windows and counters stay. PostgreSQL drops the
        monthly partitions that lie wholly before `when`."""
