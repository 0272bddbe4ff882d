"""A LoRaWAN gateway and network server standing in for The Things Network,
so the board's frames can go end to end without a radio or TTN.

The *air* is UDP on loopback: the unix-port board's simulated SX1276
(firmware/hw_unix_sx1276.py) sends each frame as one datagram with the radio
settings read back from its registers, and listens for downlinks the same way.
GatewaySim receives them, refuses what a real EU868 gateway would not hear or
TTN would not accept (a channel outside the plan, an SF/bandwidth that is no
data rate, private sync word, CRC off, inverted I/Q, power above 16 dBm), and
hands the PHYPayload to NetworkServerSim, which does what TTN's network and
application servers do for an ABP device with frame counter checks on:

- MIC check with the NwkSKey, 16-bit FCnt widened to 32 bits (rollover at
  65,535 included); a frame whose FCnt is not above the last one is refused
  (`fcnt_replay`), so a board that reset its counter is seen at once;
- FRMPayload decrypted with the AppSKey;
- The Things Stack v3 uplink JSON published on a real MQTT broker at
  `v3/{app}@{tenant}/devices/{device}/up` (QoS 0, as TTN);
- downlinks taken from `v3/{app}@{tenant}/devices/{device}/down/push`
  (`{"downlinks": [{"f_port", "frm_payload" base64}]}`), queued, and sent
  in RX1 (same channel and data rate) after the device's next uplink.

Written independently of the board's lorawan.py (pycryptodome's CMAC here).
NOT modelled: timing (the downlink is put on the air right after the uplink
arrives; the board's receive window finds it waiting), radio propagation
(RSSI/SNR are made up), several gateways / deduplication, OTAA joins, MAC
commands (ADR, LinkCheck, DevStatus: never sent, ignored when received),
confirmed uplinks' ACK bit, TTN's fair-use limits, the Storage Integration,
webhooks (`mpseal ttn` has its own webhook test).
"""
import base64
import json
import socket
import struct
import threading
import time
from datetime import datetime, timezone

from Crypto.Cipher import AES
from Crypto.Hash import CMAC

AIR_FORMAT = ">IBBBBb"  # must match firmware/hw_unix_sx1276.py
AIR_HEADER = struct.calcsize(AIR_FORMAT)
FLAG_INVERTED_IQ, FLAG_CRC, FLAG_IMPLICIT = 1, 2, 4
# EU868 as TTN's plan has it: 8 uplink channels, DR0..DR6 (docs/lorawan.md)
EU868_CHANNELS = (868100000, 868300000, 868500000, 867100000, 867300000, 867500000, 867700000, 867900000)
EU868_DATA_RATES = {(12, 7): 0, (11, 7): 1, (10, 7): 2, (9, 7): 3, (8, 7): 4, (7, 7): 5, (7, 8): 6}  # (SF, bandwidth code) -> DR
BANDWIDTH_HZ = {7: 125000, 8: 250000, 9: 500000}
MAX_EIRP_DBM = 16
PUBLIC_SYNC_WORD = 0x34


def _b(first, direction, dev_addr, fcnt, last):
    return struct.pack("<B4xBIIxB", first, direction, dev_addr, fcnt, last)


def lorawan_mic(nwk_s_key, direction, dev_addr, fcnt, message):
    c = CMAC.new(nwk_s_key, ciphermod=AES)
    c.update(_b(0x49, direction, dev_addr, fcnt, len(message)) + message)
    return c.digest()[:4]


def lorawan_crypt(key, direction, dev_addr, fcnt, data):
    aes = AES.new(key, AES.MODE_ECB)
    stream = b"".join(aes.encrypt(_b(0x01, direction, dev_addr, fcnt, i + 1)) for i in range((len(data) + 15) // 16))
    return bytes(a ^ b for a, b in zip(data, stream))


def iso_now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Session:
    """One ABP device as registered on TTN."""

    def __init__(self, device_id, dev_addr, nwk_s_key, app_s_key):
        self.device_id = device_id
        self.dev_addr = dev_addr
        self.nwk = nwk_s_key
        self.app = app_s_key
        self.last_fcnt_up = -1
        self.fcnt_down = 0
        self.downlinks = []  # queued (f_port, payload)


class NetworkServerSim:
    def __init__(self, mqtt_host, mqtt_port, application="mpseal-app", tenant="ttn"):
        import paho.mqtt.client as mqtt

        self.application = application
        self.tenant = tenant
        self.sessions = {}  # DevAddr -> Session
        self.counts = {}  # reason -> frames refused, and "uplinks", "downlinks"
        self.uplinks = []  # the JSON documents published, in order
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ttn-ns-sim")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(mqtt_host, mqtt_port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("network-server sim: no SUBACK from the MQTT broker")

    def prefix(self):
        return "v3/%s@%s/devices/" % (self.application, self.tenant)

    def _on_connect(self, client, userdata, flags, reason, properties):
        client.subscribe(self.prefix() + "+/down/push")

    def add_device(self, device_id, dev_addr, nwk_s_key, app_s_key):
        self.sessions[dev_addr] = Session(device_id, dev_addr, nwk_s_key, app_s_key)

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def _on_message(self, client, userdata, message):
        device_id = message.topic[len(self.prefix()) :].split("/")[0]
        try:
            doc = json.loads(message.payload)
            items = [(int(d.get("f_port", 1)), base64.b64decode(d["frm_payload"])) for d in doc["downlinks"]]
        except (ValueError, KeyError, TypeError):
            self.count("bad_downlink_json")
            return
        for session in self.sessions.values():
            if session.device_id == device_id:
                with self.lock:
                    session.downlinks.extend(items)
                return
        self.count("downlink_unknown_device")

    def uplink(self, phy, meta):
        """One PHYPayload heard by the gateway; returns the downlink
        PHYPayload to send in RX1, or None."""
        if len(phy) < 12 or phy[0] not in (0x40, 0x80):
            return self.count("not_data_up")
        dev_addr, fctrl, f16 = struct.unpack("<IBH", phy[1:8])
        session = self.sessions.get(dev_addr)
        if session is None:
            return self.count("unknown_dev_addr")
        last = session.last_fcnt_up
        base = max(last, 0) & ~0xFFFF
        fcnt = base | f16
        if fcnt <= last:
            if lorawan_mic(session.nwk, 0, dev_addr, fcnt, phy[:-4]) == phy[-4:]:
                return self.count("fcnt_replay")  # authentic, but the counter went back: TTN drops it
            fcnt += 0x10000
        if lorawan_mic(session.nwk, 0, dev_addr, fcnt, phy[:-4]) != phy[-4:]:
            return self.count("bad_mic")
        session.last_fcnt_up = fcnt
        start = 8 + (fctrl & 0x0F)
        f_port = phy[start] if len(phy) > start + 4 else None
        payload = b""
        if f_port is not None:
            payload = lorawan_crypt(session.nwk if f_port == 0 else session.app, 0, dev_addr, fcnt, phy[start + 1 : -4])
        self.count("uplinks")
        now = iso_now()
        doc = {
            "end_device_ids": {
                "device_id": session.device_id,
                "application_ids": {"application_id": self.application},
                "dev_addr": "%08X" % dev_addr,
            },
            "correlation_ids": ["sim:uplink:%d" % fcnt],
            "received_at": now,
            "uplink_message": {
                "f_port": f_port,
                "f_cnt": fcnt,
                "frm_payload": base64.b64encode(payload).decode(),
                "rx_metadata": [{"gateway_ids": {"gateway_id": "sim-gateway"}, "rssi": meta["rssi"], "channel_rssi": meta["rssi"], "snr": meta["snr"], "received_at": now}],
                "settings": {
                    "data_rate": {"lora": {"bandwidth": meta["bandwidth"], "spreading_factor": meta["sf"], "coding_rate": "4/5"}},
                    "frequency": str(meta["frequency"]),
                },
                "received_at": now,
            },
        }
        if f_port:  # TTN forwards application uplinks only (FPort 1..223)
            self.uplinks.append(doc)
            self.client.publish(self.prefix() + session.device_id + "/up", json.dumps(doc), qos=0)
        with self.lock:
            if not session.downlinks:
                return None
            f_port, data = session.downlinks.pop(0)
            fcnt_down = session.fcnt_down
            session.fcnt_down += 1
        message = struct.pack("<BIBHB", 0x60, dev_addr, 0, fcnt_down & 0xFFFF, f_port) + lorawan_crypt(session.app, 1, dev_addr, fcnt_down, data)
        self.count("downlinks")
        return message + lorawan_mic(session.nwk, 1, dev_addr, fcnt_down, message)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class GatewaySim:
    """The air: a UDP socket on loopback the simulated radios send to
    (MPSEAL_LORA_AIR=host:port for the board). Every frame it hears is also
    kept in `frames` (PHYPayload, settings) for tests. `lose`: the FCnts
    (the 16 bits on air) of frames the air loses, once each: kept in
    `frames`, never reaching the network server."""

    def __init__(self, network_server):
        self.ns = network_server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.frames = []
        self.refused = {}
        self.lose = set()
        self.lost = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def refuse(self, why):
        self.refused[why] = self.refused.get(why, 0) + 1

    def _run(self):
        while not self._stop.is_set():
            try:
                datagram, source = self.sock.recvfrom(1024)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(datagram) <= AIR_HEADER:
                self.refuse("runt")
                continue
            frequency, sf, bw, flags, sync, power = struct.unpack(AIR_FORMAT, datagram[:AIR_HEADER])
            channel = min(EU868_CHANNELS, key=lambda c: abs(c - frequency))
            if abs(channel - frequency) >= 100:  # two 61 Hz register steps
                self.refuse("off_channel")
            elif (sf, bw) not in EU868_DATA_RATES:
                self.refuse("no_data_rate")
            elif sync != PUBLIC_SYNC_WORD:
                self.refuse("private_sync_word")
            elif flags & FLAG_INVERTED_IQ or not flags & FLAG_CRC or flags & FLAG_IMPLICIT:
                self.refuse("not_an_uplink_modulation")
            elif power > MAX_EIRP_DBM:
                self.refuse("over_power")
            else:
                phy = datagram[AIR_HEADER:]
                meta = {"frequency": channel, "sf": sf, "bandwidth": BANDWIDTH_HZ[bw], "rssi": -57, "snr": 9.5, "dr": EU868_DATA_RATES[(sf, bw)], "at": time.monotonic()}
                self.frames.append((phy, meta))
                f16 = struct.unpack("<H", phy[6:8])[0] if len(phy) >= 8 else None
                if f16 in self.lose:
                    self.lose.discard(f16)
                    self.lost.append(f16)
                    continue
                try:
                    down = self.ns.uplink(phy, meta)
                except Exception:  # a bug here must not silence the air for the rest of the test
                    self.refuse("ns_error")
                    continue
                if down is not None:
                    # RX1: the uplink's channel and data rate, inverted I/Q
                    air = struct.pack(AIR_FORMAT, frequency, sf, bw, FLAG_INVERTED_IQ, PUBLIC_SYNC_WORD, 14)
                    self.sock.sendto(air + down, source)

    def close(self):
        self._stop.set()
        self.sock.close()
        self.thread.join(timeout=2)
