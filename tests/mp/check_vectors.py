# Runs the JSON vectors under MicroPython (and CPython): same files, same bytes.
# usage: micropython check_vectors.py VECTOR_DIR [NAME...]   (MICROPYPATH must reach shared/)
# NAMEs: only those vector files (a board-sized heap holds the package and one
# file's parsed JSON, as a board holds the package and one packet).
# Prints one line per failure and a final "N passed, M failed".
import gc
import json
import struct
import sys
from binascii import hexlify, unhexlify

import mpseal
from mpseal import payload
from mpseal.keys import DeviceKeys

failures = []
passed = 0


def load(name):
    if len(sys.argv) > 2 and name not in sys.argv[2:]:
        return []
    gc.collect()  # the previous file's vectors are garbage now: a 48k heap needs them gone
    with open(sys.argv[1] + "/" + name + ".json") as f:
        return json.load(f)


def h(data):
    return hexlify(data).decode()


def check(ok, desc):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(desc)
        print("FAIL", desc)


for v in load("generate"):
    iv = unhexlify(v["iv"]) if v["iv"] else None
    packet = mpseal.seal(unhexlify(v["master_key"]), v["device_id"], v["seq"], unhexlify(v["payload"]),
                         type=v["type"], epoch=v["epoch"], version=v["version"], iv=iv)
    check(h(packet) == v["packet"], "generate: " + v["desc"])

for v in load("verify"):
    header, data = mpseal.unseal(unhexlify(v["packet"]), unhexlify(v["master_key"]), direction=v["direction"])
    fields = v["header"]
    ok = (header.version, header.type, header.epoch, header.device_id, header.seq) == (
        fields["version"], fields["type"], fields["epoch"], fields["device_id"], fields["seq"])
    check(ok and h(data) == v["payload"], "verify: " + v["desc"])
    if "resync" in v:  # the answer's layout as a board reads it: nonce (16) | device seq u32 | host seq u32
        want = v["resync"]
        got = (h(data[:16]),) + struct.unpack(">II", data[16:24])
        check(len(data) == 24 and got == (want["nonce"], want["device_seq"], want["host_seq"]), "verify resync: " + v["desc"])

for v in load("cumulative"):  # sealed as given, opened, and read as a board reads it (firmware/lorawan_acks.py)
    key = unhexlify(v["master_key"])
    packet = mpseal.seal(key, v["device_id"], v["seq"], unhexlify(v["payload"]), type=v["type"], epoch=v["epoch"], version=v["version"])
    check(h(packet) == v["packet"], "generate: " + v["desc"])
    header, data = mpseal.unseal(packet, key, direction=mpseal.TO_DEVICE)
    want = v["cumulative"]
    got = (header.type, header.seq, struct.unpack(">I", data[:4])[0], h(data[4:12]), h(data[12:]))
    check(got == (6, v["seq"], want["highest"], want["bitmap"], want["commands"]), "verify cumulative ack: " + v["desc"])

for name in ("invalid", "invalid_seq"):
    for v in load(name):
        window = mpseal.ReplayWindow.from_bytes(unhexlify(v["window"])) if v["window"] else None
        try:
            mpseal.unseal(unhexlify(v["packet"]), unhexlify(v["master_key"]), direction=v["direction"], window=window)
            check(False, "invalid accepted: " + v["desc"])
        except mpseal.InvalidPacket as exc:
            check(exc.reason == v["reason"], "invalid: %s: got %s, want %s" % (v["desc"], exc.reason, v["reason"]))

for v in load("keys"):
    keys = DeviceKeys(unhexlify(v["master_key"]))
    for name, index in (("device_to_host", 0), ("host_to_device", 1)):
        d = keys.directions[index]
        want = v[name]
        check((h(d.enc_key), h(d.iv_key), h(d.mac_key)) == (want["enc_key"], want["iv_key"], want["mac_key"]),
              "keys: " + name)

for v in load("payload"):
    data = unhexlify(v["encoded"])
    decoded = payload.decode_values(data)
    same = sorted(decoded) == sorted(v["decoded"]) and all(
        abs(decoded[k] - v["decoded"][k]) <= 1e-6 * max(1, abs(v["decoded"][k])) for k in decoded)
    check(same, "payload decode: " + v["desc"])

print("%d passed, %d failed" % (passed, len(failures)))
sys.exit(1 if failures else 0)
