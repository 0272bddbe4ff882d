"""What happens to one packet, free of I/O: bytes and a transport name in, an
Outcome out, the writes collected in a Batch that the caller commits.

Steps, in this order (docs/receiver.md): parse header -> look up device ->
look up key by epoch -> SMS sender allowed? -> verify tag -> replay window ->
decrypt -> decode -> stored (window updated in memory, reading queued).
An authentic packet the window refuses is a *duplicate* when the same device
seq is stored with the same payload (a retransmission after a lost ack, or an
attacker replaying what he saw): acknowledged again, stored once. The ack is
sealed only after the batch is committed (Pipeline.seal_ack).
"""
from mpseal import errors
from mpseal.control import encode_ack
from mpseal.errors import InvalidPacket
from mpseal.packet import TYPE_ACK, TYPE_READING, check_tag, decrypt, parse_header, seal
from mpseal.payload import decode
from mpseal.replay_window import ReplayWindow

STORED = "stored"
DUPLICATE = "duplicate"
REJECTED = "rejected"

from mpseal_host.rejections import SEQ_REUSED, STORAGE_ERROR, UNKNOWN_SENDER  # noqa: F401  (re-exported)

MAX_ACK_COMMAND_BYTES = 400  # keeps a sealed ack under mpseal's 512-byte limit


class DeviceState:
    """The ingest cache of one device: keys ready to use, window, counters
    not yet written."""

    def __init__(self, device, keys, has_commands):
        self.id = device.id
        self.name = device.name
        self.keys = keys  # {epoch: (mpseal.DeviceKeys, "current" | "pending")}
        self.window = ReplayWindow.from_bytes(device.replay_window)
        self.last_seq = device.last_seq
        self.last_seen = device.last_seen
        self.last_transport = device.last_transport
        self.host_seq = device.host_seq
        self.allowed_numbers = frozenset(device.allowed_numbers)
        self.has_commands = has_commands
        self.clear_deltas()

    def clear_deltas(self):
        self.delta_received = self.delta_stored = self.delta_duplicates = self.delta_rejected = 0


class Batch:
    """Writes of one transaction, in the shape storage.write_batch wants."""

    def __init__(self, now):
        self.now = now
        self.readings = []  # (device_id, seq, received_at, transport, format, payload)
        self.stored_payloads = {}  # (device_id, seq) -> payload, for duplicates within the batch
        self.devices = {}  # id -> DeviceState touched
        self.rejections = {}  # (device_id or NO_DEVICE, reason) -> count
        self.commands_sent = []  # (sent_at, host_seq, device_seq, command id)
        self.promotions = {}  # device id -> epoch that became current
        self.commands_acking = {}  # (device_id, seq) -> commands its ack carried


class Outcome:
    __slots__ = ("status", "reason", "device", "device_id", "seq", "value", "transport", "ack_plan", "ack", "detail")

    def __init__(self, status, transport, reason=None, device=None, device_id=None, seq=None, detail=None):
        self.status = status
        self.reason = reason
        self.device = device  # name, when the header names a registered device
        self.device_id = device_id
        self.seq = seq
        self.value = None
        self.transport = transport
        self.ack_plan = None  # (keys, header, host seq, commands) for seal_ack
        self.ack = None
        self.detail = detail

    def as_dict(self):
        return {"status": self.status, "reason": self.reason, "device": self.device, "seq": self.seq}


class Pipeline:
    """`registry` provides: states (dict id -> DeviceState), stored_payload(id,
    seq), unsent_commands(id), commands_acking(id, seq); `no_device` is the id
    rejections of unregistered senders are counted under."""

    def __init__(self, registry, no_device):
        self.registry = registry
        self.no_device = no_device

    def _reject(self, batch, reason, transport, state=None, device_id=None, seq=None, detail=None):
        key = (state.id if state else self.no_device, reason)
        batch.rejections[key] = batch.rejections.get(key, 0) + 1
        if state is not None:
            state.delta_rejected += 1
            batch.devices[state.id] = state
        return Outcome(REJECTED, transport, reason, state.name if state else None, device_id, seq, detail)

    def process(self, packet, transport, batch, sender=None):
        """Returns an Outcome; never raises for anything a sender controls."""
        try:
            header = parse_header(packet)
        except InvalidPacket as exc:
            return self._reject(batch, exc.reason, transport, detail=str(exc))
        state = self.registry.states.get(header.device_id)
        if state is None:
            return self._reject(batch, errors.UNKNOWN_DEVICE, transport, device_id=header.device_id, seq=header.seq)
        state.delta_received += 1
        batch.devices[state.id] = state
        if header.type != TYPE_READING:
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
        try:
            state.window.check(header.seq)
            refused = None
        except InvalidPacket as exc:
            refused = exc.reason
        try:
            payload = decrypt(packet, header, keys)
            fmt, value = decode(payload)
        except InvalidPacket as exc:
            return self._reject(batch, exc.reason, transport, state, header.device_id, header.seq)
        outcome = Outcome(STORED, transport, None, state.name, header.device_id, header.seq)
        outcome.value = value if not isinstance(value, bytes) else value.hex()
        if refused is not None:
            seen = batch.stored_payloads.get((state.id, header.seq))
            if seen is None:
                seen = self.registry.stored_payload(state.id, header.seq)
            if seen is None:
                return self._reject(batch, refused, transport, state, header.device_id, header.seq)
            if seen != payload:
                return self._reject(batch, SEQ_REUSED, transport, state, header.device_id, header.seq)
            outcome.status = DUPLICATE
            state.delta_duplicates += 1
            commands = batch.commands_acking.get((state.id, header.seq))
            if commands is None:
                commands = self.registry.commands_acking(state.id, header.seq)
        else:
            state.window.update(header.seq)
            state.last_seq = max(state.last_seq, header.seq)
            state.delta_stored += 1
            if key_state != "current":  # first packet under a rotated key
                state.keys = {header.epoch: (keys, "current")}
                batch.promotions[state.id] = header.epoch
            batch.readings.append((state.id, header.seq, batch.now, transport, fmt, payload))
            batch.stored_payloads[(state.id, header.seq)] = payload
            commands = self._take_commands(state)
            if commands:
                batch.commands_acking[(state.id, header.seq)] = commands
        state.last_seen = batch.now
        state.last_transport = transport
        state.host_seq += 1
        for command_id, _, _ in commands:
            batch.commands_sent.append((batch.now, state.host_seq, header.seq, command_id))
        outcome.ack_plan = (keys, header, state.host_seq, [(opcode, bytes(arg)) for _, opcode, arg in commands])
        return outcome

    def _take_commands(self, state):
        if not state.has_commands:
            return ()
        taken = []
        size = 0
        unsent = self.registry.unsent_commands(state.id)
        for row in unsent:
            size += 2 + len(row[2])
            if size > MAX_ACK_COMMAND_BYTES:
                break
            taken.append(row)
        state.has_commands = len(taken) < len(unsent)
        return taken

    @staticmethod
    def seal_ack(outcome):
        """Seals the ack planned by process(); call after the batch commit."""
        if outcome.ack_plan is None:
            return None
        keys, header, host_seq, commands = outcome.ack_plan
        outcome.ack = seal(keys, header.device_id, host_seq, encode_ack(header.seq, commands), type=TYPE_ACK, epoch=header.epoch, version=header.version)
        outcome.ack_plan = None
        return outcome.ack
