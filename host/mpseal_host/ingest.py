"""Packets in, outcomes and sealed acks out, one transaction per batch.

Every transport (UDP, HTTP, SMS modem, gammu-smsd hook) calls
Ingestor.ingest(); see docs/receiver.md. The device cache (derived keys,
replay windows) lives in memory; each batch locks its devices' rows first
(storage.ingest_transaction) and reloads exactly those whose change counter
moved, so two processes (or N receivers on PostgreSQL) can never both accept
the same sequence number, and a foreign write costs O(changed devices).
"""
import logging
import time

from mpseal.errors import InvalidPacket
from mpseal.packet import MAX_SEQ, parse_header
from mpseal_host.host_keys import host_keys
from mpseal_host.pipeline import HOST_SEQ_EXHAUSTED, REJECTED, Batch, DeviceState, Outcome, Pipeline, ReAckLimiter
from mpseal_host.rejections import STORAGE_ERROR
from mpseal_host.storage import NO_DEVICE, StorageBusy, StorageUnavailable

log = logging.getLogger("mpseal.receiver")
request_log = logging.getLogger("mpseal.requests")  # per-packet lines (rate-limited in the receiver: log_limit.py)

LOG_LINES_PER_SECOND = 20  # rejection lines beyond this are summed into one line per second


class RejectionLog:
    """One log line per rejection naming device and reason, until a flood:
    then one summary line per second (the counters stay exact). The receiver
    gives limit=None: its one request-log limit (log_limit.py) bounds these
    lines together with every other per-request line."""

    def __init__(self, limit=LOG_LINES_PER_SECOND, clock=time.monotonic):
        self.limit = limit
        self.clock = clock
        self.window_start = clock()
        self.lines = 0
        self.suppressed = 0

    def __call__(self, outcome):
        if self.limit is None:
            return self._line(outcome)
        now = self.clock()
        if now - self.window_start >= 1.0:
            if self.suppressed:
                log.warning("%d more rejections not logged in the last second (see 'mpseal stats')", self.suppressed)
            self.window_start, self.lines, self.suppressed = now, 0, 0
        if self.lines >= self.limit:
            self.suppressed += 1
            return
        self.lines += 1
        self._line(outcome)

    @staticmethod
    def _line(outcome):
        if outcome.device is not None:
            who = "device %s (id %d)" % (outcome.device, outcome.device_id)
        elif outcome.device_id is not None:
            who = "unregistered device id %d" % outcome.device_id
        else:
            who = "unparsable packet"
        seq = "" if outcome.seq is None else " seq %d" % outcome.seq
        request_log.warning("rejected %s%s via %s: %s", who, seq, outcome.transport, outcome.detail or outcome.reason)


class Ingestor:
    """The pipeline over a Storage: keeps the device cache, runs one
    ingest_transaction per batch. Use it from the thread that owns its
    Storage (one connection, contract.py)."""

    def __init__(self, storage, log_rejection=None):
        self.storage = storage
        self.states = {}  # device id -> DeviceState, refreshed per device by change counter
        self._key_cache = {}  # master key bytes -> DeviceKeys (host_keys.py; HKDF once per key, not per refresh)
        self.limiter = ReAckLimiter()  # lives as long as the process: the re-ack budget spans batches
        self.pipeline = Pipeline(self, NO_DEVICE, self.limiter)
        self.log_rejection = log_rejection or RejectionLog()
        self.refreshed = 0  # device states (re)loaded from storage: O(changed devices)

    # registry interface used by the pipeline
    def stored_reading(self, device_id, seq):
        return self.storage.stored_reading(device_id, seq)

    def unsent_commands(self, device_id):
        return self.storage.unsent_commands(device_id)

    def _host_keys(self, key):
        keys = self._key_cache.get(key)
        if keys is None:
            if len(self._key_cache) > 4 * len(self.states) + 64:  # retired keys: start over
                self._key_cache = {}
            keys = self._key_cache[key] = host_keys(key)
        return keys

    def _refresh(self, ids, versions):
        """Under the batch's locks: reload exactly the devices whose stored
        change counter differs from the cached copy; forget removed ones."""
        states = self.states
        for device_id in ids:
            if device_id not in versions:
                states.pop(device_id, None)
        stale = [i for i, v in versions.items() if i not in states or states[i].version != v]
        if not stale:
            return
        for device, keys, has_commands in self.storage.ingest_states(stale):
            entries = {epoch: (self._host_keys(key), state) for epoch, key, state in keys}
            states[device.id] = DeviceState(device, entries, has_commands)
        self.refreshed += len(stale)

    def ingest(self, items, now=None, rejections=None, on_busy=None):
        """items: iterable of (packet, transport), (packet, transport, sender),
        (packet, transport, sender, source) or (..., source, radio) (sender:
        an SMS number checked against allowed numbers; source: the address,
        for the re-ack limits; radio: (rssi, snr), stored with the reading).
        Returns [(Outcome, ack bytes or None)] in the same order.

        rejections: {(device id, reason): n} refused before the pipeline (an
        HTTP body that is not a packet), counted in the same transaction.
        on_busy: None, or a function called each time another process holds
        the write lock past the busy timeout; the batch then waits and tries
        again (it raises StorageBusy to give up: storage_error) instead of
        failing as storage_error at the first timeout."""
        items = list(items)
        ids = set()
        headers = []  # parsed once: for the locks here, for the pipeline below
        for item in items:
            try:
                header = parse_header(item[0])
                ids.add(header.device_id)
            except InvalidPacket as exc:
                header = exc  # the pipeline refuses (and counts) it
            headers.append(header)
        ids = sorted(ids)  # every backend locks in id order: no deadlock between receivers
        try:
            while True:
                # A fresh batch per try: StorageBusy comes before anything was processed.
                batch = Batch(time.time() if now is None else now)
                if rejections:
                    batch.rejections.update(rejections)
                started = False
                try:
                    with self.storage.ingest_transaction(ids, batch.now) as versions:
                        started = True
                        self._refresh(ids, versions)
                        process = self.pipeline.process
                        outcomes = [process(item[0], item[1], batch, *item[2:5], header=header)
                                    for item, header in zip(items, headers)]
                        self.storage.write_batch(batch)
                    break
                except StorageBusy:
                    if on_busy is None:
                        raise
                    if started:  # a lock timeout mid-batch (PostgreSQL): the cached windows may have moved
                        for device_id in ids:
                            self.states.pop(device_id, None)
                    on_busy()
        except Exception as exc:  # a full disk or a bug must not take the receiver down
            # Nothing was stored, so nothing is acknowledged; the in-memory
            # windows may have moved ahead of the database: reload them.
            if isinstance(exc, StorageUnavailable):  # StorageBusy included
                log.error("could not store a batch of %d packets: %s", len(items), exc)
            else:
                log.exception("ingest failed for a batch of %d packets", len(items))
            for device_id in ids:
                self.states.pop(device_id, None)
            return [(Outcome(REJECTED, item[1], STORAGE_ERROR, detail=str(exc)), None) for item in items]
        for state in batch.devices.values():
            state.version += 1  # write_batch raised each touched device's counter by one
            state.clear_deltas()
        for device_id, source in batch.sources:
            self.limiter.delivered(device_id, source)
        results = []
        for outcome in outcomes:
            if outcome.status == REJECTED:
                self.log_rejection(outcome)
            results.append((outcome, outcome.ack))
        return results

    def downlink(self, device_id, seal, command_budget, now=None):
        """Seals one host packet nobody asked for (LoRaWAN's cumulative ack,
        ttn.py) under the device's next host seq, with the commands waiting
        for it that fit `command_budget` bytes, and marks those sent: in one
        transaction with the device's row locked, so two processes never
        send a command twice or reuse a host seq.
        seal(state, host_seq, keys, epoch, commands [(opcode, argument)]) -> bytes.
        Returns the packet, or None (no such device, host seq used up)."""
        batch = Batch(time.time() if now is None else now)
        packet = None
        try:
            with self.storage.ingest_transaction([device_id], batch.now) as versions:
                self._refresh([device_id], versions)
                state = self.states.get(device_id)
                if state is None:
                    return None
                batch.devices[state.id] = state
                if state.host_seq >= MAX_SEQ:
                    batch.event(state.id, HOST_SEQ_EXHAUSTED)
                else:
                    epoch, (keys, _) = next((e, k) for e, k in state.keys.items() if k[1] == "current")
                    commands = self.pipeline._take_commands(state, command_budget)
                    packet = seal(state, state.host_seq + 1, keys, epoch, [(opcode, bytes(arg)) for _, opcode, arg in commands])
                    state.host_seq += 1
                    batch.commands_sent = [(batch.now, state.host_seq, state.last_seq, command_id) for command_id, _, _ in commands]
                self.storage.write_batch(batch)
        except Exception:
            self.states.pop(device_id, None)  # the cached host seq and commands may be ahead of the database
            raise
        state.version += 1
        state.clear_deltas()
        return packet
