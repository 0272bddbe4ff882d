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
TTN's fair use allows about 10 downlinks per device a day, so acks are not
sent per reading (AckSchedule): an ack that carries commands goes at once, a
plain ack (naming the newest stored reading) at most every `plain_every`
seconds.
"""
import base64
import binascii
import hmac
import json

from mpseal_host.pipeline import DUPLICATE, STORED

TRANSPORT = "lorawan"
DEFAULT_TENANT = "ttn"
PLAIN_ACK_EVERY_S = 4 * 3600  # 6 plain acks a day: inside TTN's ~10 downlinks per device per day
MAX_UPLINK_JSON = 64 * 1024  # a TTS uplink document is a few KB; anything far larger is refused unread
BAD_JSON = "ttn_bad_json"
NOT_AN_UPLINK = "ttn_not_an_uplink"
UNKNOWN_TTN_DEVICE = "ttn_unknown_device"
TTN_DEVICE_MISMATCH = "ttn_device_mismatch"


class TtnError(ValueError):
    """An uplink document we cannot use; `reason` is one of the names above."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason


class Uplink:
    __slots__ = ("device_id", "dev_addr", "packet", "f_cnt", "f_port", "rssi", "snr", "received_at")

    def __init__(self, device_id, dev_addr, packet, f_cnt, f_port, rssi, snr, received_at):
        self.device_id = device_id
        self.dev_addr = dev_addr
        self.packet = packet
        self.f_cnt = f_cnt
        self.f_port = f_port
        self.rssi = rssi
        self.snr = snr
        self.received_at = received_at


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
    return Uplink(device_id, dev_addr, packet, f_cnt, f_port, rssi, snr, received_at if isinstance(received_at, str) else None)


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


class AckSchedule:
    """Which acks go down: with commands at once; plain ones at most every
    `plain_every` seconds per device (TTN fair use). Clock passed in."""

    def __init__(self, plain_every=PLAIN_ACK_EVERY_S):
        self.plain_every = plain_every
        self.last_sent = {}  # mpseal device id -> time of the last downlink

    def due(self, device_id, carries_commands, now):
        last = self.last_sent.get(device_id)
        if carries_commands or last is None or now - last >= self.plain_every:
            self.last_sent[device_id] = now
            return True
        return False


class TtnIngest:
    """Uplink documents in, (Outcome, Uplink or None, downlink packet or
    None) out. `devices` maps TTN device ids to mpseal device ids; when
    given, uplinks from other TTN devices, or carrying another device's
    packet, are refused (the seal would refuse a forgery anyway: this catches
    a wrong registration early)."""

    def __init__(self, ingestor, devices=None, schedule=None):
        self.ingestor = ingestor
        self.devices = devices
        self.schedule = schedule or AckSchedule()
        self.counts = {}  # reason -> documents refused before the pipeline
        self.radio = {}  # mpseal device id -> (rssi, snr, f_cnt, received_at) of its latest uplink

    def _refuse(self, reason):
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def _downlink(self, ack, device_id):
        """(carries commands, the packet to send down) for our own sealed
        ack, opened with the device's host->device keys. Over LoRa an ack
        always arrives after the board's NEXT uplink (Class A: it waits in
        TTN's queue for RX1), so the board takes it as a stale ack, whose
        commands never run (firmware/downlink.py). Commands therefore go
        down as a command packet: the same host sequence number, epoch and
        commands, sealed as type 3. The ack itself is never sent to the board
        (the pipeline keeps it for re-acks over other links, which the board
        then refuses as a replayed host number: the commands run once)."""
        from mpseal import TO_DEVICE, TYPE_ACK, TYPE_COMMAND, InvalidPacket, parse_header, seal, unseal

        try:
            header = parse_header(ack)
            keys = self.ingestor.states[device_id].keys[header.epoch][0]
            if header.type != TYPE_ACK:
                return True, ack
            payload = unseal(ack, keys, direction=TO_DEVICE)[1]
        except (InvalidPacket, KeyError):
            return True, ack
        if len(payload) <= 4:
            return False, ack
        return True, seal(keys, header.device_id, header.seq, payload[4:], type=TYPE_COMMAND, epoch=header.epoch, version=header.version)

    def handle(self, raw, now):
        try:
            uplink = parse_uplink(raw)
        except TtnError as exc:
            self._refuse(exc.reason)
            return exc, None, None
        if self.devices is not None:
            expected = self.devices.get(uplink.device_id)
            if expected is None:
                self._refuse(UNKNOWN_TTN_DEVICE)
                return TtnError(UNKNOWN_TTN_DEVICE, uplink.device_id), uplink, None
            if len(uplink.packet) >= 7 and int.from_bytes(uplink.packet[3:7], "big") != expected:
                self._refuse(TTN_DEVICE_MISMATCH)
                return TtnError(TTN_DEVICE_MISMATCH, "%s sent a packet of device id %d" % (uplink.device_id, int.from_bytes(uplink.packet[3:7], "big"))), uplink, None
        outcome, ack = self.ingestor.ingest([(uplink.packet, TRANSPORT)], now=now)[0]
        if outcome.status in (STORED, DUPLICATE):
            self.radio[outcome.device_id] = (uplink.rssi, uplink.snr, uplink.f_cnt, uplink.received_at)
        # Only a newly stored reading's ack goes down: a duplicate (the same
        # reading via Wi-Fi too, or a replay) would re-send commands under a
        # new host sequence number and spend a scarce downlink.
        if ack is None or outcome.status != STORED:
            return outcome, uplink, None
        carries, down = self._downlink(ack, outcome.device_id)
        if not self.schedule.due(outcome.device_id, carries, now):
            return outcome, uplink, None
        return outcome, uplink, down
