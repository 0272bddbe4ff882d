"""The Things Stack v3 (The Things Network) as one more way in: uplinks from
its webhook or MQTT integration go into the same pipeline as UDP, HTTP and
SMS (ingest.Ingestor), so a reading that arrives via LoRaWAN and via Wi-Fi is
stored once. This module is the I/O-free core; ttn_service.py holds the MQTT
client and the webhook server around it.

What TTN hands us is FRMPayload, already decrypted with the AppSKey it holds:
our sealed mpseal packet (the compact v2 profile), which TTN can neither read
nor forge. Uplink JSON (TTS v3, the fields used here):

    {"end_device_ids": {"device_id": "...", "dev_addr": "260B1234", ...},
     "received_at": "2026-12-01T08:00:00.123Z",
     "uplink_message": {"f_port": 1, "f_cnt": 65537, "frm_payload": "<base64>",
                        "rx_metadata": [{"rssi": -57, "snr": 9.5, ...}, ...]}}

Downlinks go to `.../devices/{device}/down/push` as
`{"downlinks": [{"f_port": 1, "frm_payload": "<base64>", "priority": "NORMAL"}]}`.
TTN's fair use allows about 10 downlinks per device a day, so a LoRa board
gets no ack per reading: it keeps what went on air until a *cumulative ack*
(docs/protocol.md, type 6: the host's highest stored seq and the bitmap of
the 63 below it, i.e. its replay window, then commands) says what is stored,
and resends the gaps. AckPolicy says when one goes down (docs/lorawan.md).
A TTN end device maps to an mpseal device through the registry
(`mpseal devices add NAME --ttn-id ID`).
"""
import base64
import binascii
import hmac
import json

from mpseal.control import TYPE_CUMULATIVE_ACK, encode_cumulative_ack
from mpseal.packet import VERSION_COMPACT, seal
from mpseal_host.pipeline import CUMULATIVE_ACK_TRANSPORTS, DUPLICATE, MAX_ACK_COMMAND_BYTES, STORED
from mpseal_host.rejections import TTN_DEVICE_MISMATCH, UNKNOWN_TTN_DEVICE
from mpseal_host.storage import NO_DEVICE

TRANSPORT = "lorawan"
assert TRANSPORT in CUMULATIVE_ACK_TRANSPORTS  # its readings' own acks carry no commands (pipeline.py)
DEFAULT_TENANT = "ttn"
MAX_UPLINK_JSON = 64 * 1024  # a TTS uplink document is a few KB; anything far larger is refused unread
BAD_JSON = "ttn_bad_json"
NOT_AN_UPLINK = "ttn_not_an_uplink"

# The cumulative-ack policy's defaults (AckPolicy, docs/lorawan.md).
ACK_EVERY_S = 4 * 3600  # at least every 4 h while readings come in: 6 a day
ACK_AFTER_READINGS = 48  # or after 48 new readings: well inside the 64 a cumulative ack can speak for
MAX_DOWNLINKS_PER_DAY = 10  # TTN's fair use, per device, commands included
DAY_S = 24 * 3600

# EU868 (RP001 1.0.3, no FOpts): the largest FRMPayload per data rate, and the
# uplink's (spreading factor, bandwidth Hz) -> data rate. RX1 answers at the
# uplink's data rate (offset 0). firmware/region_eu868.py has the same table.
EU868_MAX_FRM_PAYLOAD = (51, 51, 51, 115, 222, 222, 222)
EU868_DATA_RATES = {(12, 125000): 0, (11, 125000): 1, (10, 125000): 2, (9, 125000): 3, (8, 125000): 4, (7, 125000): 5, (7, 250000): 6}
_COMPACT_FRAMING = 11 + 8  # header + tag of the compact profile (docs/protocol.md section 2)
_ACK_STATE = 12  # highest u32 + bitmap u64


def command_budget(max_frm_payload):
    """Bytes of commands a compact cumulative ack can carry in a FRMPayload
    of at most `max_frm_payload` bytes (PKCS#7 takes at least one byte):
    19 at DR0..DR2, 83 at DR3, 179 from DR4."""
    blocks = (max_frm_payload - _COMPACT_FRAMING) // 16
    return max(0, min(16 * blocks - 1 - _ACK_STATE, MAX_ACK_COMMAND_BYTES))


def seal_cumulative_ack(state, host_seq, keys, epoch, commands):
    """For Ingestor.downlink: the device's replay window as stored (highest
    seq, bitmap of the 63 below it), then `commands`, sealed compact."""
    payload = encode_cumulative_ack(state.window.highest, state.window.bitmap, commands)
    return seal(keys, state.id, host_seq, payload, type=TYPE_CUMULATIVE_ACK, epoch=epoch, version=VERSION_COMPACT)


class TtnError(ValueError):
    """An uplink document we cannot use; `reason` is one of the names above."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason


class Uplink:
    __slots__ = ("device_id", "dev_addr", "packet", "f_cnt", "f_port", "rssi", "snr", "received_at", "data_rate")

    def __init__(self, device_id, dev_addr, packet, f_cnt, f_port, rssi, snr, received_at, data_rate=None):
        self.device_id = device_id
        self.dev_addr = dev_addr
        self.packet = packet
        self.f_cnt = f_cnt
        self.f_port = f_port
        self.rssi = rssi
        self.snr = snr
        self.received_at = received_at
        self.data_rate = data_rate  # EU868 DR of the uplink (RX1 answers at it), None when not given

    def max_downlink(self):
        """The largest FRMPayload RX1 can carry back: the uplink's DR, DR0's 51 when unknown."""
        return EU868_MAX_FRM_PAYLOAD[self.data_rate or 0]


def up_topic(application, tenant=DEFAULT_TENANT, device="+"):
    return "v3/%s@%s/devices/%s/up" % (application, tenant, device)


def down_push_topic(application, tenant, device):
    return "v3/%s@%s/devices/%s/down/push" % (application, tenant, device)


def parse_uplink(raw):
    """Uplink from a TTS v3 uplink document (bytes, str or dict). Raises
    TtnError; never anything else for what a sender controls."""
    if isinstance(raw, (bytes, bytearray, str)):
        if len(raw) > MAX_UPLINK_JSON:
            raise TtnError(BAD_JSON, "%d bytes, at most %d" % (len(raw), MAX_UPLINK_JSON))
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TtnError(BAD_JSON, "not JSON (%s)" % exc)
    try:
        ids = raw["end_device_ids"]
        device_id = ids["device_id"]
        up = raw["uplink_message"]
    except (KeyError, TypeError):
        raise TtnError(NOT_AN_UPLINK, "no end_device_ids.device_id or uplink_message (a join, a downlink event?)")
    if not isinstance(device_id, str) or not isinstance(up, dict):
        raise TtnError(NOT_AN_UPLINK, "end_device_ids.device_id must be a string, uplink_message an object")
    payload = up.get("frm_payload")
    if not isinstance(payload, str):  # absent for MAC-only uplinks (FPort 0)
        raise TtnError(NOT_AN_UPLINK, "no frm_payload")
    try:
        packet = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TtnError(BAD_JSON, "frm_payload is not base64")
    rssi = snr = None
    metadata = up.get("rx_metadata")
    if isinstance(metadata, list):
        # the best gateway: what the link to the board can do at most
        heard = [m for m in metadata if isinstance(m, dict) and isinstance(m.get("rssi"), (int, float))]
        if heard:
            best = max(heard, key=lambda m: m["rssi"])
            rssi = best["rssi"]
            snr = best.get("snr") if isinstance(best.get("snr"), (int, float)) else None
    f_cnt = up.get("f_cnt") if isinstance(up.get("f_cnt"), int) else None
    f_port = up.get("f_port") if isinstance(up.get("f_port"), int) else None
    dev_addr = ids.get("dev_addr") if isinstance(ids.get("dev_addr"), str) else None
    received_at = up.get("received_at") or raw.get("received_at")
    data_rate = None
    try:
        lora = up["settings"]["data_rate"]["lora"]
        data_rate = EU868_DATA_RATES.get((int(lora["spreading_factor"]), int(lora["bandwidth"])))
    except (KeyError, TypeError, ValueError):
        pass
    return Uplink(device_id, dev_addr, packet, f_cnt, f_port, rssi, snr, received_at if isinstance(received_at, str) else None, data_rate)


def rfc3339(timestamp):
    """A POSIX time as TTN's API wants it: "2026-12-01T08:00:00.123456Z"."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BACKFILL_MARGIN_S = 300  # a back-fill from our own last storage time starts this much earlier (clocks, TTN's delay)


def backfill_start(storage):
    """Where a back-fill at start-up begins: a little before the newest
    reading that came in by LoRaWAN, or None (nothing stored that way yet).
    What is fetched twice is stored once."""
    times = [r["received_at"] for r in storage.latest_readings().values() if r and r["transport"] == TRANSPORT]
    return rfc3339(max(times) - BACKFILL_MARGIN_S) if times else None


def down_push(packet, f_port=1):
    """The down/push document carrying one sealed mpseal packet."""
    return {"downlinks": [{"f_port": f_port, "frm_payload": base64.b64encode(packet).decode(), "priority": "NORMAL"}]}


def secret_ok(given, expected):
    """Constant-time check of the webhook's secret header (TTS sends the
    custom headers configured on the webhook with every request)."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class AckPolicy:
    """When a device's cumulative ack goes down, decided after each uplink
    that stored a reading (docs/lorawan.md "Acks and commands over LoRa"):
    when commands wait for it, or `after` readings were stored since its
    last ack, or `every` seconds passed since then (the clock starts when
    the device is first heard); and never more than `per_day` in any 24 h
    (TTN's fair use). `mpseal ttn ack-now` sends one outside this policy.
    The clock is passed in."""

    def __init__(self, every=ACK_EVERY_S, after=ACK_AFTER_READINGS, per_day=MAX_DOWNLINKS_PER_DAY):
        self.every = every
        self.after = after
        self.per_day = per_day
        self.sent_at = {}  # mpseal device id -> times of its downlinks in the last 24 h
        self.since = {}  # mpseal device id -> (time of its last ack or first uplink, readings stored since)

    def due(self, device_id, commands_waiting, now):
        """Counts one stored reading of `device_id`; True when an ack is due now."""
        start, stored = self.since.get(device_id, (now, 0))
        stored += 1
        self.since[device_id] = (start, stored)
        sent = [t for t in self.sent_at.get(device_id, ()) if now - t < DAY_S]
        self.sent_at[device_id] = sent
        if len(sent) >= self.per_day:
            return False
        return bool(commands_waiting) or stored >= self.after or now - start >= self.every

    def sent(self, device_id, now):
        self.sent_at.setdefault(device_id, []).append(now)
        self.since[device_id] = (now, 0)


class TtnIngest:
    """Uplink documents in, (Outcome, Uplink or None, downlink packet or
    None) out. The TTN end device id maps to the mpseal device through the
    registry (Device.ttn_id); an unmapped id, or an uplink carrying another
    device's packet, is refused and counted (`mpseal stats`): the seal would
    refuse a forgery anyway, this catches a wrong registration early."""

    def __init__(self, ingestor, policy=None):
        self.ingestor = ingestor
        self.storage = ingestor.storage
        self.policy = policy or AckPolicy()
        self.counts = {}  # reason -> documents refused before the pipeline
        self.radio = {}  # mpseal device id -> (rssi, snr, f_cnt, received_at) of its latest uplink

    def _refuse(self, reason, device_id=None):
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if device_id is not None:  # device-level refusals go with the pipeline's (mpseal stats, the page)
            self.storage.count_rejection(device_id, reason)

    def cumulative_ack(self, device_id, max_frm_payload=EU868_MAX_FRM_PAYLOAD[0], now=None):
        """Seals the device's cumulative ack now (next host seq, the commands
        that fit), or None (unknown device, host seq used up)."""
        packet = self.ingestor.downlink(device_id, seal_cumulative_ack, command_budget(max_frm_payload), now)
        if packet is not None and now is not None:
            self.policy.sent(device_id, now)
        return packet

    def handle(self, raw, now):
        try:
            uplink = parse_uplink(raw)
        except TtnError as exc:
            self._refuse(exc.reason)
            return exc, None, None
        device = self.storage.device_by_ttn_id(uplink.device_id)
        if device is None:
            self._refuse(UNKNOWN_TTN_DEVICE, NO_DEVICE)
            return TtnError(UNKNOWN_TTN_DEVICE, "%s is no device's TTN id (mpseal devices set-ttn-id NAME %s)" % (uplink.device_id, uplink.device_id)), uplink, None
        if len(uplink.packet) >= 7 and int.from_bytes(uplink.packet[3:7], "big") != device.id:
            self._refuse(TTN_DEVICE_MISMATCH, device.id)
            return TtnError(TTN_DEVICE_MISMATCH, "%s (device %s) sent a packet of device id %d" % (uplink.device_id, device.name, int.from_bytes(uplink.packet[3:7], "big"))), uplink, None
        outcome, _ = self.ingestor.ingest([(uplink.packet, TRANSPORT, None, None, (uplink.rssi, uplink.snr))], now=now)[0]
        if outcome.status in (STORED, DUPLICATE):
            self.radio[outcome.device_id] = (uplink.rssi, uplink.snr, uplink.f_cnt, uplink.received_at)
        # Only a newly stored reading counts towards an ack: a duplicate (the
        # same reading via Wi-Fi too, a resend, a replay) spends no downlink.
        if outcome.status != STORED:
            return outcome, uplink, None
        state = self.ingestor.states.get(outcome.device_id)
        if not self.policy.due(outcome.device_id, state is not None and state.has_commands, now):
            return outcome, uplink, None
        return outcome, uplink, self.cumulative_ack(outcome.device_id, uplink.max_downlink(), now)
