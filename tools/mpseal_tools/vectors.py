"""Known-answer vectors for docs/protocol.md, as JSON (Fernet's habit).

`python -m mpseal_tools.vectors --write tests/vectors` regenerates the files;
the tests then check that BOTH runtimes reproduce every byte. Keys and IVs are
fixed so the output is deterministic; never use them for anything real.
"""
import argparse
import json
import os
import struct

import mpseal
from mpseal.aes import cbc_encrypt
from mpseal import control, errors, payload
from mpseal.keys import TO_DEVICE, TO_HOST, DeviceKeys
from mpseal.packet import HEADER_FORMAT

KEY_A = bytes(range(32))
KEY_B = bytes.fromhex("a5" * 32)
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
READING = {"temperature": 21.37, "humidity": 45.2, "battery": 3.712}
NONCE = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")


def _gen(desc, key, device_id, seq, data, type=mpseal.TYPE_READING, epoch=0, version=1, iv=IV):
    iv = iv if version == mpseal.VERSION_STANDARD else None
    packet = mpseal.seal(key, device_id, seq, data, type=type, epoch=epoch, version=version, iv=iv)
    return {
        "desc": desc,
        "master_key": key.hex(),
        "device_id": device_id,
        "seq": seq,
        "epoch": epoch,
        "type": type,
        "version": version,
        "iv": iv.hex() if iv else None,
        "payload": data.hex(),
        "packet": packet.hex(),
    }


def generate_vectors():
    values = payload.encode_values(READING)
    return [
        _gen("reading, 3 values, standard profile", KEY_A, 1, 1, values),
        _gen("reading, 3 values, compact (LoRa) profile", KEY_A, 1, 2, values, version=2),
        _gen("empty payload is one block of padding", KEY_A, 0xFFFFFFFF, 0xFFFFFFFF, b""),
        _gen("16-byte payload gets a whole padding block", KEY_B, 42, 7, bytes(range(16)), epoch=3),
        _gen("JSON payload", KEY_B, 42, 8, payload.encode_json({"door": "open"})),
        _gen("ack host->device with set-interval", KEY_A, 1, 1, control.encode_ack(1, [control.set_interval(300)]), type=mpseal.TYPE_ACK),
        _gen("command host->device: read-now, compact", KEY_A, 1, 2, control.encode_commands([control.read_now()]), type=mpseal.TYPE_COMMAND, version=2),
        _gen("plain ack (no commands)", KEY_A, 1, 2, control.encode_ack(2), type=mpseal.TYPE_ACK),
        _gen("command packet: every command kind", KEY_B, 42, 9, control.encode_commands(
            [control.read_now(), control.set_interval(60), control.reboot(), control.rotate_key(4, KEY_A)]), type=mpseal.TYPE_COMMAND, epoch=3),
        _gen("resync request device->host (seq 0, nonce, reason unreadable)", KEY_A, 1, 0, control.encode_resync_request(NONCE, 2), type=control.TYPE_RESYNC_REQUEST),
        _gen("resync request, compact profile (reason missing)", KEY_A, 1, 0, control.encode_resync_request(NONCE, 1), type=control.TYPE_RESYNC_REQUEST, version=2),
        _gen("resync answer host->device (highest stored 1200, host seq 7)", KEY_A, 1, 0, control.encode_resync(NONCE, 1200, 7), type=control.TYPE_RESYNC),
        _gen("resync answer, compact profile, epoch 3", KEY_B, 42, 0, control.encode_resync(NONCE, 0xFFFFFFFE, 0), type=control.TYPE_RESYNC, epoch=3, version=2),
    ]


def verify_vectors(generated):
    out = []
    for v in generated:
        direction = TO_HOST if v["type"] in (mpseal.TYPE_READING, control.TYPE_RESYNC_REQUEST) else TO_DEVICE
        item = {}
        data = bytes.fromhex(v["payload"])
        if v["type"] == control.TYPE_RESYNC:  # what a board reads from the answer (firmware/downlink.py)
            nonce, device_seq, host_seq = control.decode_resync(data)
            item["resync"] = {"nonce": nonce.hex(), "device_seq": device_seq, "host_seq": host_seq}
        out.append(dict(item, **{
            "desc": v["desc"],
            "master_key": v["master_key"],
            "direction": direction,
            "packet": v["packet"],
            "header": {"version": v["version"], "type": v["type"], "epoch": v["epoch"], "device_id": v["device_id"], "seq": v["seq"]},
            "payload": v["payload"],
        }))
    return out


def _flip(packet_hex, index, bit=0x01):
    b = bytearray.fromhex(packet_hex)
    b[index] ^= bit
    return b.hex()


def _bad_padding_packet():
    # An authentic packet whose plaintext padding is wrong: only a sender with the
    # key can make one, and it must still be refused (bad_padding, after the MAC).
    keys = DeviceKeys(KEY_A).directions[TO_HOST]
    header = struct.pack(HEADER_FORMAT, 1, mpseal.TYPE_READING, 0, 1, 5)
    body = header + IV + cbc_encrypt(keys.enc, IV, bytes(15) + b"\x11")
    return (body + keys.mac.digest(body)[:16]).hex()


def _header_only(type, seq, body_blocks=1, tag=16, iv=16):
    # Framing refusals happen before the tag is looked at: any bytes will do.
    return (struct.pack(HEADER_FORMAT, 1, type, 0, 1, seq) + bytes(iv + 16 * body_blocks + tag)).hex()


def cumulative_vectors():
    """LoRaWAN's cumulative ack (docs/protocol.md section 6): generate and
    verify in one file of its own, so a 48k heap loads each file whole."""
    out = []
    for v in [
        _gen("cumulative ack, compact, with set-interval (1000 stored, 999 and 996 missing)", KEY_A, 1, 9,
             control.encode_cumulative_ack(1000, (1 << 64) - 1 - (1 << 1) - (1 << 4), [control.set_interval(600)]),
             type=control.TYPE_CUMULATIVE_ACK, version=2),
        _gen("cumulative ack, compact, no commands, only seq 3 stored so far", KEY_B, 42, 1,
             control.encode_cumulative_ack(3, 1), type=control.TYPE_CUMULATIVE_ACK, epoch=3, version=2),
    ]:
        highest, bitmap, commands = control.decode_cumulative_ack(bytes.fromhex(v["payload"]))
        v["cumulative"] = {"highest": highest, "bitmap": "%016x" % bitmap, "commands": control.encode_commands(commands).hex(),
                           "stored": control.stored_seqs(highest, bitmap)}
        out.append(v)
    return out


def invalid_vectors(generated):
    std = generated[0]["packet"]
    compact = generated[1]["packet"]
    ack = generated[5]["packet"]
    accepted_1 = mpseal.ReplayWindow()
    accepted_1.update(1)
    far_ahead = mpseal.ReplayWindow()
    far_ahead.update(200)
    k = KEY_A.hex()

    def case(desc, packet, reason, key=k, direction=TO_HOST, window=None):
        return {"desc": desc, "master_key": key, "direction": direction, "packet": packet, "reason": reason, "window": window}

    return [
        case("empty packet", "", errors.TRUNCATED),
        case("header only", std[:22], errors.TRUNCATED),
        case("one byte appended (not whole AES blocks)", std + "00", errors.BAD_LENGTH),
        case("standard packet cut by one byte", std[:-2], errors.TRUNCATED),
        case("compact packet shorter than header+block+tag", compact[: 2 * (11 + 8 + 15)], errors.TRUNCATED),
        case("unknown version 9", "09" + std[2:], errors.BAD_VERSION),
        case("unknown message type 9", std[:2] + "09" + std[4:], errors.BAD_TYPE),
        case("oversize: 513 bytes", "01" * 513, errors.OVERSIZE),
        case("bit flipped in ciphertext", _flip(std, 40), errors.BAD_TAG),
        case("bit flipped in IV", _flip(std, 11), errors.BAD_TAG),
        case("bit flipped in device id", _flip(std, 6), errors.BAD_TAG),
        case("bit flipped in sequence number", _flip(std, 10, 0x02), errors.BAD_TAG),
        case("key epoch changed", _flip(std, 2), errors.BAD_TAG),
        case("bit flipped in tag", _flip(std, len(std) // 2 - 1), errors.BAD_TAG),
        case("bit flipped in compact tag", _flip(compact, len(compact) // 2 - 1), errors.BAD_TAG),
        case("wrong key", std, errors.BAD_TAG, key=KEY_B.hex()),
        case("extended by one AES block", std + "00" * 16, errors.BAD_TAG),
        case("ack reflected to the host", ack, errors.BAD_TYPE),
        case("reading presented to a device", std, errors.BAD_TYPE, direction=TO_DEVICE),
        case("replay of an accepted sequence number", std, errors.REPLAY, window=accepted_1.to_bytes().hex()),
        case("sequence number older than the 64-entry window", std, errors.TOO_OLD, window=far_ahead.to_bytes().hex()),
        case("authentic packet with bad padding", _bad_padding_packet(), errors.BAD_PADDING),
    ]


def invalid_seq_vectors(generated):
    """Sequence-number rules and resync messages (docs/protocol.md section 5);
    a file of their own so a 48k MicroPython heap can load each file whole."""
    std = generated[0]["packet"]
    resync_request = generated[9]["packet"]
    resync_answer = generated[11]["packet"]
    k = KEY_A.hex()

    def case(desc, packet, reason, direction=TO_HOST):
        return {"desc": desc, "master_key": k, "direction": direction, "packet": packet, "reason": reason, "window": None}

    return [
        case("reading with sequence 0", _flip(std, 10), errors.BAD_SEQ),
        case("ack with sequence 0", _header_only(mpseal.TYPE_ACK, 0), errors.BAD_SEQ, direction=TO_DEVICE),
        case("resync request with a sequence number", _header_only(control.TYPE_RESYNC_REQUEST, 1, 2), errors.BAD_SEQ),
        case("resync answer with a sequence number", _header_only(control.TYPE_RESYNC, 5, 2), errors.BAD_SEQ, direction=TO_DEVICE),
        case("resync request presented to a device", resync_request, errors.BAD_TYPE, direction=TO_DEVICE),
        case("resync answer reflected to the host", resync_answer, errors.BAD_TYPE),
        case("resync answer with a bit flipped in the nonce block", _flip(resync_answer, 30), errors.BAD_TAG, direction=TO_DEVICE),
        case("cumulative ack with sequence 0", _header_only(control.TYPE_CUMULATIVE_ACK, 0), errors.BAD_SEQ, direction=TO_DEVICE),
        case("cumulative ack reflected to the host", cumulative_vectors()[0]["packet"], errors.BAD_TYPE),
        case("cumulative ack with a bit flipped in its bitmap", _flip(cumulative_vectors()[0]["packet"], 16), errors.BAD_TAG, direction=TO_DEVICE),
    ]


def key_vectors():
    out = []
    for key in (KEY_A, KEY_B):
        keys = DeviceKeys(key)
        entry = {"master_key": key.hex()}
        for name, direction in (("device_to_host", TO_HOST), ("host_to_device", TO_DEVICE)):
            d = keys.directions[direction]
            entry[name] = {"enc_key": d.enc_key.hex(), "iv_key": d.iv_key.hex(), "mac_key": d.mac_key.hex()}
        out.append(entry)
    return out


def payload_vectors():
    cases = [
        ("temperature, humidity, battery", READING),
        ("negative temperature, int16", {"temperature": -12.5}),
        ("named value, int32", [("pulses", 1234567)]),
        ("int8 value", [("door", 1)]),
        ("explicit decimals", [("ph", 7.25, 2)]),
    ]
    out = []
    for desc, values in cases:
        encoded = payload.encode_values(values)
        out.append({"desc": desc, "encoded": encoded.hex(), "decoded": payload.decode_values(encoded)})
    return out


def all_vectors():
    generated = generate_vectors()
    return {
        "generate": generated,
        "verify": verify_vectors(generated),
        "invalid": invalid_vectors(generated),
        "invalid_seq": invalid_seq_vectors(generated),
        "cumulative": cumulative_vectors(),
        "keys": key_vectors(),
        "payload": payload_vectors(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="DIR", required=True)
    args = parser.parse_args(argv)
    for name, vectors in all_vectors().items():
        path = os.path.join(args.write, name + ".json")
        with open(path, "w") as f:
            json.dump(vectors, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote %s (%d vectors)" % (path, len(vectors)))


if __name__ == "__main__":
    main()
