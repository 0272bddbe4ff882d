"""keygen, seal, unseal, inspect: packets by hand, for humans debugging."""
import base64
import binascii
import json
import os
import sys

import mpseal
from mpseal import control
from mpseal import payload as payload_codec
from mpseal.keys import MASTER_KEY_SIZE
from mpseal_host.errors import UserError

FORMATS = ("raw", "hex", "base64")


KEY_ENV = "MPSEAL_KEY"


def add_key_options(parser, default_help="", required=False):
    """--key-file / --key-env / $MPSEAL_KEY: a key never has to be on a command
    line, where every local user sees it in `ps`. --key HEX still works for
    throwaway keys and says so."""
    parser.add_argument("--key-file", metavar="PATH", help="read the master key (64 hex digits) from PATH; '-' = stdin")
    parser.add_argument("--key-env", metavar="VAR", help="read the master key from environment variable VAR (default %s)" % KEY_ENV)
    parser.add_argument("--key", metavar="HEX", help="the key itself: discouraged, visible to every local user in ps %s" % default_help)
    parser.set_defaults(key_required=required)


def key_from_args(args, required=True, stdin_free=True):
    """The key bytes from --key-file, --key-env, --key or $MPSEAL_KEY (in that
    order), or None when none is given and the key is optional. stdin_free:
    False where standard input carries the data (seal, unseal)."""
    given = [name for name in ("key_file", "key_env", "key") if getattr(args, name, None)]
    if len(given) > 1:
        raise UserError("give the key one way: --key-file, --key-env or --key")
    if getattr(args, "key_file", None):
        try:
            if args.key_file == "-":
                if not stdin_free:
                    raise UserError("standard input carries the data here: give the key with --key-file PATH or --key-env VAR")
                text = sys.stdin.readline()
            else:
                with open(args.key_file) as f:
                    text = f.read()
        except OSError as exc:
            raise UserError("cannot read the key file %s: %s" % (args.key_file, exc.strerror or exc))
        return parse_key(text)
    if getattr(args, "key_env", None):
        if args.key_env not in os.environ:
            raise UserError("environment variable %s is not set (--key-env names the variable holding the key)" % args.key_env)
        return parse_key(os.environ[args.key_env])
    if getattr(args, "key", None):
        key = parse_key(args.key)
        if sys.stderr.isatty():  # a person typing it; scripts keep their one-line error contract
            print("mpseal: warning: --key shows the key to every local user (ps); prefer --key-file, --key-env or $%s"
                  % KEY_ENV, file=sys.stderr)
        return key
    if os.environ.get(KEY_ENV):
        return parse_key(os.environ[KEY_ENV])
    if required:
        raise UserError("no key given: use --key-file PATH, --key-env VAR or set $%s" % KEY_ENV)
    return None


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
    key = key_from_args(args, stdin_free=False)
    data = read_input(args.input_format)
    if args.values:
        try:
            values = json.loads(data)
        except (ValueError, RecursionError) as exc:  # includes UnicodeError
            raise UserError("--values wants a JSON object like {\"temperature\": 21.5}: %s" % exc)
        try:
            data = payload_codec.encode_values_exact(values)
        except ValueError as exc:
            raise UserError("--values: %s (docs/protocol.md section 6)" % exc)
    version = mpseal.VERSION_COMPACT if args.compact else mpseal.VERSION_STANDARD
    types = {name: code for code, name in TYPE_NAMES.items()}
    try:
        packet = mpseal.seal(key, args.device, args.seq, data, type=types[args.type], epoch=args.epoch, version=version)
    except ValueError as exc:
        raise UserError(str(exc))
    write_output(packet, args.format)


def cmd_unseal(args):
    key = key_from_args(args, stdin_free=False)
    packet = read_input(args.format)
    direction = mpseal.TO_DEVICE if args.to_device else mpseal.TO_HOST
    try:
        header, data = mpseal.unseal(packet, key, direction=direction)
    except mpseal.InvalidPacket as exc:
        print("mpseal: packet refused: %s" % exc, file=sys.stderr)
        return 1
    if args.decode:
        try:
            value = decode_payload(header.type, data)
        except mpseal.InvalidPacket as exc:
            print("mpseal: payload refused: %s" % exc, file=sys.stderr)
            return 1
        print(json.dumps({"header": header_dict(header), "payload": value}, sort_keys=True))
        return 0
    write_output(data, args.output_format)


TYPE_NAMES = {
    mpseal.TYPE_READING: "reading",
    mpseal.TYPE_ACK: "ack",
    mpseal.TYPE_COMMAND: "command",
    control.TYPE_RESYNC_REQUEST: "resync-request",
    control.TYPE_RESYNC: "resync",
    control.TYPE_CUMULATIVE_ACK: "cumulative-ack",
}


def command_dict(opcode, argument):
    entry = {"command": control.CMD_NAMES.get(opcode, "unknown opcode %d" % opcode)}
    if opcode == control.CMD_SET_INTERVAL and len(argument) == 4:
        entry["seconds"] = control.interval_of(argument)
    elif opcode == control.CMD_ROTATE_KEY and len(argument) == 33:
        entry["epoch"] = argument[0]  # the new key itself is never printed
    elif argument:
        entry["argument_length"] = len(argument)
    return entry


def decode_payload(type, data):
    """The payload as JSON-ready data, by message type (docs/protocol.md
    section 6); raises InvalidPacket(bad_payload)."""
    if type == mpseal.TYPE_ACK:
        acked, commands = control.decode_ack(data)
        return {"acked_seq": acked, "commands": [command_dict(*c) for c in commands]}
    if type == mpseal.TYPE_COMMAND:
        return {"commands": [command_dict(*c) for c in control.decode_command_packet(data)]}
    if type == control.TYPE_CUMULATIVE_ACK:
        highest, bitmap, commands = control.decode_cumulative_ack(data)
        return {"highest_seq": highest, "stored": control.stored_seqs(highest, bitmap), "commands": [command_dict(*c) for c in commands]}
    if type == control.TYPE_RESYNC_REQUEST:
        nonce, reason = control.decode_resync_request(data)
        return {"nonce": nonce.hex(), "reason": reason}
    if type == control.TYPE_RESYNC:
        nonce, device_seq, host_seq = control.decode_resync(data)
        return {"nonce": nonce.hex(), "device_seq": device_seq, "host_seq": host_seq}
    value = payload_codec.decode(data)[1]
    return value.hex() if isinstance(value, bytes) else value


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
    add_key_options(p)
    p.add_argument("--device", type=int, required=True, help="device id (u32)")
    p.add_argument("--seq", type=int, required=True, help="sequence number (1..2**32-1; 0 for resync messages)")
    p.add_argument("--epoch", type=int, default=0, help="key epoch (default 0)")
    p.add_argument("--type", choices=tuple(TYPE_NAMES.values()), default="reading")
    p.add_argument("--compact", action="store_true", help="LoRa profile (derived IV, 8-byte tag)")
    p.add_argument("--values", action="store_true", help="stdin is a JSON object of values to encode compactly")
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet output format")
    p.add_argument("--input-format", choices=FORMATS, default="raw", help="payload input format")
    p.set_defaults(func=cmd_seal)

    p = subparsers.add_parser("unseal", help="open a packet from stdin; payload on stdout")
    add_key_options(p)
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet input format")
    p.add_argument("--output-format", choices=FORMATS, default="raw", help="payload output format")
    p.add_argument("--decode", action="store_true", help="print header and decoded payload as JSON")
    p.add_argument("--to-device", action="store_true", help="open a host->device packet (ack, command, resync)")
    p.set_defaults(func=cmd_unseal)

    p = subparsers.add_parser("inspect", help="print the header fields of a packet (no key needed)")
    p.add_argument("--format", choices=FORMATS, default="raw", help="packet input format")
    p.set_defaults(func=cmd_inspect)
