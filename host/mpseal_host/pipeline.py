"""What happens to one packet, free of I/O: bytes and a transport name in, an
Outcome out, the writes collected in a Batch that the caller commits.

Steps, in this order (docs/receiver.md): parse header -> look up device ->
look up key by epoch -> SMS sender allowed? -> verify tag -> replay window ->
decrypt -> decode -> stored (window updated in memory, reading and its sealed
ack queued for the same transaction).
An authentic packet the window refuses is a *duplicate* when the same device
seq is stored with the same payload (a retransmission after a lost ack, or an
attacker replaying what he saw). A duplicate is answered with the very ack
bytes the first copy got (stored with the reading): it uses no host sequence
number and carries nothing new, so replaying it a million times makes a board
run its commands once (docs/protocol.md section 5). Re-acks and resync answers
are rate-limited per device and per source address (ReAckLimiter).
The ack is sealed here, before the commit, and sent only after it.
"""
import time

from mpseal import errors
from mpseal.control import TYPE_RESYNC, TYPE_RESYNC_REQUEST, decode_resync_request, encode_ack, encode_resync
from mpseal.errors import InvalidPacket
from mpseal.packet import MAX_SEQ, TYPE_ACK, TYPE_READING, check_tag, decrypt, parse_header, seal
from mpseal.payload import decode
from mpseal.replay_window import ReplayWindow
from mpseal_host.storage.model import NewReading
from mpseal_host.stored_value import stored_value
from mpseal_host.rejections import SEQ_REUSED, STORAGE_ERROR, UNKNOWN_SENDER  # noqa: F401  (re-exported)

STORED = "stored"
DUPLICATE = "duplicate"
REJECTED = "rejected"
RESYNCED = "resynced"  # a resync request answered (docs/protocol.md section 5)

# Events of a device that are not refusals (Batch.events; `mpseal stats`)
REACK_LIMITED = "reack_limited"  # a duplicate or resync request left unanswered: over the re-ack budget
HOST_SEQ_EXHAUSTED = "host_seq_exhausted"  # stored, but no ack can be sealed: re-provision the device
SEAL_FAILED = "seal_failed"  # stored, but sealing its ack failed (a bug): logged, the batch's other acks still go out

MAX_ACK_SIZE = 256  # a sealed ack is at most this big: the board's reply buffer (firmware/transport_udp.py)
# Commands per ack: 4 (acked seq) + 192 pads to 208 bytes of ciphertext, so
# an ack is at most 11 + 16 + 208 + 16 = 251 bytes.
MAX_ACK_COMMAND_BYTES = 192
# Links whose boards get no ack per reading: commands ride on the cumulative
# ack instead (LoRaWAN: ttn.py, docs/lorawan.md), so a reading that came this
# way gets a plain ack (kept for a copy arriving over another link).
CUMULATIVE_ACK_TRANSPORTS = frozenset(("lorawan",))


class TokenBucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens, at):
        self.tokens = tokens
        self.at = at


class ReAckLimiter:
    """Token buckets bounding how often the host answers a packet it will not
    store (a duplicate's re-ack, a resync answer). Per device: at most
    DEVICE_BURST + DEVICE_RATE * t answers in t seconds, whatever the sources
    (an attacker replaying one capture cannot burn host work or sequence
    numbers, and cannot bounce more than that at a third host through one
    device's packets). Per source address: a source that delivered a reading
    of that device for the first time is *known* and gets the device's rate;
    any other address (a spoofed one, a reflection target) gets NEW_BURST +
    NEW_RATE * t. An answer is never larger than the packet that asked for it."""

    DEVICE_BURST = 16  # a board resends a reading at most 3 times per cycle (transport_udp) and 16 queued per cycle
    DEVICE_RATE = 1.0  # answers per second, sustained
    NEW_BURST = 2
    NEW_RATE = 0.1
    MAX_SOURCES = 10000  # bucket table bound; when full it is cleared (unknown sources then start at NEW_BURST again)
    KNOWN_PER_DEVICE = 4  # addresses remembered per device as known

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.devices = {}
        self.sources = {}
        self.known = {}  # device id -> [source, ...] newest last

    def _take(self, table, key, burst, rate, now):
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def delivered(self, device_id, source):
        """`source` sent a reading of `device_id` that was stored for the first time."""
        if source is None:
            return
        known = self.known.setdefault(device_id, [])
        if source not in known:
            known.append(source)
            del known[: -self.KNOWN_PER_DEVICE]

    def allow(self, device_id, source):
        now = self.clock()
        if source is not None:
            if len(self.sources) >= self.MAX_SOURCES:
                self.sources.clear()
            if source in self.known.get(device_id, ()):
                burst, rate = self.DEVICE_BURST, self.DEVICE_RATE
            else:
                burst, rate = self.NEW_BURST, self.NEW_RATE
            bucket = self.sources.get((device_id, source))
            if not self._take(self.sources, (device_id, source), burst, rate, now):
                return False
        return self._take(self.devices, device_id, self.DEVICE_BURST, self.DEVICE_RATE, now)


class DeviceState:
    """The ingest cache of one device: keys ready to use, window, counters
    not yet written."""

    def __init__(self, device, keys, has_commands):
        self.id = device.id
        self.name = device.name
        self.version = device.version  # the stored change counter this copy matches
        self.keys = keys  # {epoch: (mpseal.DeviceKeys, "current" | "pending")}
        self.window = ReplayWindow.from_bytes(device.replay_window)
        self.last_seq = device.last_seq
        self.last_seen = device.last_seen
        self.last_transport = device.last_transport
        self.host_seq = device.host_seq
        self.allowed_numbers = frozenset(device.allowed_numbers)
        self.has_commands = has_commands
        self.layout = None  # of its last values payload (stored_value.py)
        self.clear_deltas()

    def clear_deltas(self):
        self.delta_received = self.delta_stored = self.delta_duplicates = self.delta_rejected = 0


class Batch:
    """Writes of one transaction, in the shape storage.write_batch wants."""

    def __init__(self, now):
        self.now = now
        self.readings = []  # storage NewReading (value decoded once, here; the sealed ack kept with it)
        self.stored = {}  # (device_id, seq) -> (payload, ack), for duplicates within the batch
        self.devices = {}  # id -> DeviceState touched
        self.rejections = {}  # (device_id or NO_DEVICE, reason) -> count
        self.events = {}  # (device_id, event name) -> count: re-acks refused, resync requests by reason, ...
        self.commands_sent = []  # (sent_at, host_seq, device_seq, command id)
        self.promotions = {}  # device id -> epoch that became current
        self.acks_kept = []  # (ack, device_id, seq): acks sealed late for readings stored without one
        self.sources = {}  # (device_id, source) that delivered a first-time reading -> None (ReAckLimiter.delivered after commit, once per pair)

    def event(self, device_id, name):
        key = (device_id, name)
        self.events[key] = self.events.get(key, 0) + 1


class Outcome:
    __slots__ = ("status", "reason", "device", "device_id", "seq", "payload", "_value", "transport", "ack", "detail")

    def __init__(self, status, transport, reason=None, device=None, device_id=None, seq=None, detail=None):
        self.status = status
        self.reason = reason
        self.device = device  # name, when the header names a registered device
        self.device_id = device_id
        self.seq = seq
        self.payload = None  # the validated payload bytes of a stored or duplicate reading
        self._value = None
        self.transport = transport
        self.ack = None  # sealed reply to send once the batch is committed, or None
        self.detail = detail

    @property
    def value(self):
        """The decoded payload (dict for values payloads, hex for raw), made
        on first use: the receiver itself never needs it."""
        if self._value is None and self.payload is not None:
            value = decode(self.payload)[1]
            self._value = value.hex() if isinstance(value, bytes) else value
        return self._value

    @value.setter
    def value(self, value):
        self._value = value

    def as_dict(self):
        return {"status": self.status, "reason": self.reason, "device": self.device, "seq": self.seq}


class Pipeline:
    """`registry` provides: states (dict id -> DeviceState), stored_reading(id,
    seq) -> (payload, ack) or None, unsent_commands(id); `no_device` is the id
    rejections of unregistered senders are counted under; `limiter` a
    ReAckLimiter (kept across batches by the caller)."""

    def __init__(self, registry, no_device, limiter=None):
        self.registry = registry
        self.no_device = no_device
        self.limiter = limiter or ReAckLimiter()

    def _reject(self, batch, reason, transport, state=None, device_id=None, seq=None, detail=None):
        key = (state.id if state else self.no_device, reason)
        batch.rejections[key] = batch.rejections.get(key, 0) + 1
        if state is not None:
            state.delta_rejected += 1
            batch.devices[state.id] = state
        return Outcome(REJECTED, transport, reason, state.name if state else None, device_id, seq, detail)

    def process(self, packet, transport, batch, sender=None, source=None, radio=None, header=None):
        """Returns an Outcome; never raises for anything a sender controls.
        `sender`: the SMS number (checked against the device's allowed
        numbers); `source`: the address the packet came from (an SMS number,
        a UDP (host, port)), for the re-ack limits; `radio`: (rssi, snr) of
        the link, stored with a new reading. Each may be None. `header`:
        what parse_header(packet) returned or raised, when the caller has it
        already."""
        if source is None:
            source = sender
        if header is None:
            try:
                header = parse_header(packet)
            except InvalidPacket as exc:
                header = exc
        if isinstance(header, InvalidPacket):
            return self._reject(batch, header.reason, transport, detail=str(header))
        state = self.registry.states.get(header.device_id)
        if state is None:
            return self._reject(batch, errors.UNKNOWN_DEVICE, transport, device_id=header.device_id, seq=header.seq)
        state.delta_received += 1
        batch.devices[state.id] = state
        if header.type != TYPE_READING and header.type != TYPE_RESYNC_REQUEST:
            return self._reject(batch, errors.BAD_TYPE, transport, state, header.device_id, header.seq)
        entry = state.keys.get(header.epoch)
        if entry is None:
            return self._reject(batch, errors.UNKNOWN_EPOCH, transport, state, header.device_id, header.seq)
        keys, key_state = entry
        if sender is not None and state.allowed_numbers and sender not in state.allowed_numbers:
            return self._reject(batch, UNKNOWN_SENDER, transport, state, header.device_id, header.seq, sender)
        try:
            check_tag(packet, header, keys)
        except InvalidPacket as exc:
            return self._reject(batch, exc.reason, transport, state, header.device_id, header.seq)
        # --- authentic from here on ---
        if header.type == TYPE_RESYNC_REQUEST:
            return self._resync(packet, header, keys, state, transport, batch, source)
        refused = None
        if header.seq <= state.window.highest:  # (above it: new, the common case; no call)
            try:
                state.window.check(header.seq)
            except InvalidPacket as exc:
                refused = exc.reason
        try:
            payload = decrypt(packet, header, keys)
            fmt, value, state.layout = stored_value(payload, state.layout)  # checked as decode() checks
        except InvalidPacket as exc:
            return self._reject(batch, exc.reason, transport, state, header.device_id, header.seq)
        outcome = Outcome(STORED, transport, None, state.name, header.device_id, header.seq)
        outcome.payload = payload
        state.last_seen = batch.now
        state.last_transport = transport
        if refused is not None:
            seen = batch.stored.get((state.id, header.seq))
            if seen is None:
                seen = self.registry.stored_reading(state.id, header.seq)
            if seen is None:
                return self._reject(batch, refused, transport, state, header.device_id, header.seq)
            if seen[0] != payload:
                return self._reject(batch, SEQ_REUSED, transport, state, header.device_id, header.seq)
            outcome.status = DUPLICATE
            state.delta_duplicates += 1
            if not self.limiter.allow(state.id, source):
                batch.event(state.id, REACK_LIMITED)
                return outcome
            outcome.ack = seen[1]  # the first copy's ack, byte for byte
            if outcome.ack is None:
                # Stored before acks were kept (or its ack could not be
                # sealed): seal a plain one once, and keep it from now on.
                outcome.ack = self._seal_ack(keys, header, state, batch, with_commands=False)
                if outcome.ack is not None:
                    batch.acks_kept.append((outcome.ack, state.id, header.seq))
                    batch.stored[(state.id, header.seq)] = (payload, outcome.ack)
            return outcome
        state.window.update(header.seq)
        if header.seq > state.last_seq:
            state.last_seq = header.seq
        state.delta_stored += 1
        if key_state != "current":  # first packet under a rotated key
            state.keys = {header.epoch: (keys, "current")}
            batch.promotions[state.id] = header.epoch
        outcome.ack = self._seal_ack(keys, header, state, batch, with_commands=transport not in CUMULATIVE_ACK_TRANSPORTS)
        rssi, snr = radio or (None, None)
        batch.readings.append(
            NewReading(state.id, header.seq, batch.now, transport, fmt, payload, value, outcome.ack, rssi, snr)
        )
        batch.stored[(state.id, header.seq)] = (payload, outcome.ack)
        batch.sources[(state.id, source)] = None
        return outcome

    def _seal_ack(self, keys, header, state, batch, with_commands=True):
        """The ack of a reading stored for the first time, with the commands
        waiting for the device; None when it cannot be sealed (counted)."""
        if state.host_seq >= MAX_SEQ:
            batch.event(state.id, HOST_SEQ_EXHAUSTED)
            return None
        commands = self._take_commands(state) if with_commands else ()
        try:
            ack = seal(
                keys,
                header.device_id,
                state.host_seq + 1,
                encode_ack(header.seq, [(opcode, bytes(arg)) for _, opcode, arg in commands]),
                type=TYPE_ACK,
                epoch=header.epoch,
                version=header.version,
            )
        except ValueError:  # cannot happen for valid state; never cost the batch's other acks
            batch.event(state.id, SEAL_FAILED)
            if commands:
                state.has_commands = True  # not sent: they stay queued
            return None
        state.host_seq += 1
        for command_id, _, _ in commands:
            batch.commands_sent.append((batch.now, state.host_seq, header.seq, command_id))
        return ack

    def _resync(self, packet, header, keys, state, transport, batch, source):
        """Answers a resync request (docs/protocol.md section 5): sealed
        host->device under the request's epoch and version, bound to its
        nonce, naming the highest device seq accepted and the host seq. Uses
        no sequence number of either direction (both are 0)."""
        try:
            nonce, why = decode_resync_request(decrypt(packet, header, keys))
        except InvalidPacket as exc:
            return self._reject(batch, exc.reason, transport, state, header.device_id, header.seq)
        batch.event(state.id, "resync:" + why)
        outcome = Outcome(RESYNCED, transport, None, state.name, header.device_id, 0)
        outcome.value = {"reason": why, "device_seq": state.window.highest, "host_seq": state.host_seq}
        if not self.limiter.allow(state.id, source):
            batch.event(state.id, REACK_LIMITED)
            return outcome
        answer = encode_resync(nonce, state.window.highest, state.host_seq)
        outcome.ack = seal(keys, header.device_id, 0, answer, type=TYPE_RESYNC, epoch=header.epoch, version=header.version)
        return outcome

    def _take_commands(self, state, budget=MAX_ACK_COMMAND_BYTES):
        """Unsent commands of `state`, oldest first, as many as fit `budget`
        bytes (in order: one that does not fit waits, with those behind it)."""
        if not state.has_commands:
            return ()
        taken = []
        size = 0
        unsent = self.registry.unsent_commands(state.id)
        for row in unsent:
            size += 2 + len(row[2])
            if size > budget:
                break
            taken.append(row)
        state.has_commands = len(taken) < len(unsent)
        return taken
