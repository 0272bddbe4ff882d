"""keygen, seal, unseal, inspect: packets by hand, for humans debugging."""
import base64
import binascii
import json
import os
import sys

import mpseal
from mpseal import payload as payload_codec
from mpseal.keys import MASTER_KEY_SIZE
from mpseal_host.errors import UserError

FORMATS = ("raw", "hex", "base64")


def parse_key(text):
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise UserError("the key must be hexadecimal (64 hex digits, e.g. from 'mpseal keygen')")
    if len(key) != MASTER_KEY_SIZE:
        raise UserError("the key must be %d bytes (64 hex digits), got %d bytes" % (MASTER_KEY_SIZE, len(key)))
    return key


def read_input(fmt):
    data = sys.stdin.buffer.read()
    if fmt == "raw":
        return data
    try:
        if fmt == "hex":
            return bytes.fromhex(data.decode().strip())
        return base64.b64decode(data.strip(), validate=True)
    except (ValueError, binascii.Error, UnicodeError):
        raise UserError("standard input is not valid %s (use --format raw|hex|base64)" % fmt)


def write_output(data, fmt):
    if fmt == "raw":
        sys.stdout.buffer.write(data)
    elif fmt == "hex":
        print(data.hex())
    else:
        print(base64.b64encode(data).decode())
    sys.stdout.flush()


def cmd_keygen(args):
    print(os.urandom(MASTER_KEY_SIZE).hex())


def cmd_seal(args):
    key = parse_key(args.key)
    data = read_input(args.input_format)
    if args.values:
        try:
            data = payload_codec.encode_values(json.loads(data))
        except (ValueError, AttributeError) as exc:
            raise UserError("--values wants a JSON object like {\"temperature\": 21.5}: %s" % exc)
    version = mpseal.VERSION_COMPACT if args.compact else mpseal.VERSION_STANDARD
    types = {"reading": mpseal.TYPE_READING, "ack": mpseal.TYPE_ACK, "command": mpseal.TYPE_COMMAND}
    try:
        packet = mpseal.seal(key, args.device, args.seq, data, type=types[args.type], epoch=args.epoch, version=version)
    except ValueError as exc:
        raise UserError(str(exc))
    write_output(packet, args.format)


def cmd_unseal(args):
    key = parse_key(args.key)
    packet = read_input(args.format)
    direction = mpseal.TO_DEVICE if args.to_device else mpseal.TO_HOST
    try:
        header, data = mpseal.unseal(packet, key, direction=direction)
    except mpseal.InvalidPacket as exc:
        print("mpseal: packet refused: %s" % exc, file=sys.stderr)
        return 1
    if args.decode:
        try:
            _, value = payload_codec.decode(data)
        except mpseal.InvalidPacket as exc:
            print("mpseal: payload refused: %s" % exc, file=sys.stderr)
            return 1
        if isinstance(value, bytes):
            value = value.hex()
        print(json.dumps({"header": header_dict(header), "payload": value}, sort_keys=True))
        return 0
    write_output(data, args.output_format)


TYPE_NAMES = {mpseal.TYPE_READING: "reading", mpseal.TYPE_ACK: "ack", mpseal.TYPE_COMMAND: "command"}


def header_dict(header):
    """A packet header for JSON output. (Lives here, not in mpseal.Header:
    boards import mpseal and never print a header, so it would cost them heap.)"""
    return {
        "version": header.version,
        "type": TYPE_NAMES.get(header.type, header.type),
        "epoch": header.epoch,
        "device_id": header.device_id,
        "seq": header.seq,
    }


def cmd_inspect(args):
    packet = read_input(args.format)
    try:
        header = mpseal.parse_header(packet)
    except mpseal.InvalidPacket as exc:
        print("mpseal: not a packet: %s" % exc, file=sys.stderr)
        return 1
    info = header_dict(header)
    info["length"] = len(packet)
    print(json.dumps(info, sort_keys=True))


def register(subparsers):
    p = subparsers.add_parser("keygen", help="print a new 32-byte master key as 64 hex digits")
    p.set_defaults(func=cmd_keygen)

    p = subparsers.add_parser("seal", help="seal a payload from stdin into a packet on stdout")
    p.add_argument("--key", required=True, help="master key, 64 hex digits")
    p.add_argument("--device", type=int, required=True, help="device id (u32)")
    p.add_argument("--seq", type=int, required=True, help="sequence number (1..2**32-1)")
    p.add_argument("--epoch", type=int, default=0, help="key epoch (default 0)")
    p.add_argument("--type", choices=("reading", "ack", "command"), default="reading")
    p.add_argument("--compact", action="store_true", help="LoRa profile (derived IV, 8-byte tag)")
    p.add_argument("--values", action="store_true", help="stdin is a JSON object of values to encode compactly")
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet output format")
    p.add_argument("--input-format", choices=FORMATS, default="raw", help="payload input format")
    p.set_defaults(func=cmd_seal)

    p = subparsers.add_parser("unseal", help="open a packet from stdin; payload on stdout")
    p.add_argument("--key", required=True, help="master key, 64 hex digits")
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet input format")
    p.add_argument("--output-format", choices=FORMATS, default="raw", help="payload output format")
    p.add_argument("--decode", action="store_true", help="print header and decoded payload as JSON")
    p.add_argument("--to-device", action="store_true", help="open a host->device packet (ack/command)")
    p.set_defaults(func=cmd_unseal)

    p = subparsers.add_parser("inspect", help="print the header fields of a packet (no key needed)")
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet input format")
    p.set_defaults(func=cmd_inspect)
