# Host -> device payloads. An ack names the sequence number it acknowledges and
# may carry commands (the downlink rides on the ack the board waits for
# anyway); a command packet carries commands alone (e.g. by SMS).
#   ack payload     = acked seq u32 | command*
#   command payload = command+
#   command         = opcode u8 | argument length u8 | argument bytes
import struct

from mpseal.packet import InvalidPacket

CMD_READ_NOW = 1  # no argument
CMD_SET_INTERVAL = 2  # u32 seconds
CMD_REBOOT = 3  # no argument
CMD_ROTATE_KEY = 4  # new epoch u8 | new 32-byte master key
CMD_NAMES = {CMD_READ_NOW: "read-now", CMD_SET_INTERVAL: "set-interval", CMD_REBOOT: "reboot", CMD_ROTATE_KEY: "rotate-key"}


def read_now():
    return (CMD_READ_NOW, b"")


def set_interval(seconds):
    if not 1 <= seconds <= 0xFFFFFFFF:
        raise ValueError("interval must be 1..2**32-1 seconds")
    return (CMD_SET_INTERVAL, struct.pack(">I", seconds))


def reboot():
    return (CMD_REBOOT, b"")


def rotate_key(new_epoch, new_master_key):
    if len(new_master_key) != 32 or not 0 <= new_epoch <= 255:
        raise ValueError("rotate-key needs an epoch 0..255 and a 32-byte key")
    return (CMD_ROTATE_KEY, bytes((new_epoch,)) + bytes(new_master_key))


def encode_commands(commands):
    out = bytearray()
    for opcode, argument in commands:
        if not 0 < opcode < 256 or len(argument) > 255:
            raise ValueError("bad command %r" % (opcode,))
        out.append(opcode)
        out.append(len(argument))
        out.extend(argument)
    return bytes(out)


def decode_commands(data):
    commands = []
    i = 0
    n = len(data)
    while i < n:
        if i + 2 > n or i + 2 + data[i + 1] > n:
            raise InvalidPacket("bad_payload", "command truncated")
        length = data[i + 1]
        commands.append((data[i], bytes(data[i + 2 : i + 2 + length])))
        i += 2 + length
    return commands


def encode_ack(acked_seq, commands=()):
    return struct.pack(">I", acked_seq) + encode_commands(commands)


def decode_ack(payload):
    """Returns (acked_seq, [(opcode, argument bytes)])."""
    if len(payload) < 4:
        raise InvalidPacket("bad_payload", "ack too short")
    return struct.unpack(">I", bytes(payload[:4]))[0], decode_commands(payload[4:])


def interval_of(argument):
    if len(argument) != 4:
        raise InvalidPacket("bad_payload", "set-interval argument must be 4 bytes")
    return struct.unpack(">I", argument)[0]
