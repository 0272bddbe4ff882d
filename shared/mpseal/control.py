# Control payloads (docs/protocol.md section 6). An ack names the sequence
# number it acknowledges and may carry commands (the downlink rides on the ack
# the board waits for anyway); a command packet carries commands alone (e.g.
# by SMS). Resync messages (sequence 0) recover a board's lost sequence store.
#   ack payload            = acked seq u32 | command*
#   command payload        = command+            (an empty list is bad_payload)
#   command                = opcode u8 | argument length u8 | argument bytes
#   resync request payload = nonce (16) | reason u8             device -> host
#   resync payload         = nonce (16) | highest device seq u32 | host seq u32
#   cumulative ack payload = highest stored device seq u32 | bitmap u64 | command*
#                            (bit i of the bitmap: seq highest - i is stored;
#                            the host's replay-window state, section 5)
# The board decodes these itself (firmware/downlink.py, commands.py) so it
# never loads this module; tests/test_firmware_units.py checks they agree.
import struct

from mpseal.packet import InvalidPacket

TYPE_RESYNC_REQUEST = 4  # message types of the resync exchange (packet.py's TYPE_DIRECTION has them as numbers)
TYPE_RESYNC = 5
TYPE_CUMULATIVE_ACK = 6  # host -> device, a host seq: what is stored of the last 64 (LoRaWAN, docs/lorawan.md)
CUMULATIVE_WINDOW = 64  # seqs a cumulative ack speaks for: highest and the 63 below it

CMD_READ_NOW = 1  # no argument
CMD_SET_INTERVAL = 2  # u32 seconds
CMD_REBOOT = 3  # no argument
CMD_ROTATE_KEY = 4  # new epoch u8 | new 32-byte master key
CMD_UPDATE_OFFER = 16  # version u32 | sha256 of release.txt (32 bytes) | release URL (ASCII); docs/ota.md
CMD_NAMES = {CMD_READ_NOW: "read-now", CMD_SET_INTERVAL: "set-interval", CMD_REBOOT: "reboot", CMD_ROTATE_KEY: "rotate-key",
             CMD_UPDATE_OFFER: "update-offer"}
# Argument length each opcode must have; any other length is refused by the
# board (counted in commands_refused), as is an opcode not in this table.
# update-offer's length varies with its URL: 37..255 (update_offer()).
ARGUMENT_SIZES = {CMD_READ_NOW: 0, CMD_SET_INTERVAL: 4, CMD_REBOOT: 0, CMD_ROTATE_KEY: 33}
# set-interval bounds, the same on host and board: 0 would send with no wait
# at all, and a week is far beyond any deployment's reporting period.
MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 7 * 24 * 3600

RESYNC_NONCE_SIZE = 16
# Why a board asks (the request's reason byte; the host counts each by name).
RESYNC_REASONS = {
    1: "seq_store_missing",  # no /seq.dat (a fresh board, or a lost file)
    2: "seq_store_unreadable",  # torn or corrupt /seq.dat or /cmdseq.dat
    3: "seq_exhausted",  # 2**32-1 was used: the board has stopped sealing readings (no answer needed)
}


def read_now():
    return (CMD_READ_NOW, b"")


def set_interval(seconds):
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ValueError("interval must be %d..%d seconds" % (MIN_INTERVAL_S, MAX_INTERVAL_S))
    return (CMD_SET_INTERVAL, struct.pack(">I", seconds))


def reboot():
    return (CMD_REBOOT, b"")


def rotate_key(new_epoch, new_master_key):
    if len(new_master_key) != 32 or not 0 <= new_epoch <= 255:
        raise ValueError("rotate-key needs an epoch 0..255 and a 32-byte key")
    return (CMD_ROTATE_KEY, bytes((new_epoch,)) + bytes(new_master_key))


def update_offer(version, manifest_sha256, url):
    """Offers the signed release `version` (release.txt's sha256, 32 bytes)
    at `url` (http://host:port/path/, the release folder) to one board."""
    url = url.encode() if isinstance(url, str) else bytes(url)
    if not 1 <= version <= 0x7FFFFFFF or len(manifest_sha256) != 32:
        raise ValueError("update-offer needs a version 1..2**31-1 and a 32-byte sha256")
    if not url.startswith(b"http://") or b" " in url or len(url) > 255 - 36:
        raise ValueError("update-offer URL must be http://... without spaces, at most 219 bytes")
    return (CMD_UPDATE_OFFER, struct.pack(">I", version) + bytes(manifest_sha256) + url)


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


def decode_command_packet(payload):
    """A command packet's commands; one with none is bad_payload."""
    commands = decode_commands(payload)
    if not commands:
        raise InvalidPacket("bad_payload", "command packet without commands")
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


def encode_resync_request(nonce, reason):
    if len(nonce) != RESYNC_NONCE_SIZE or reason not in RESYNC_REASONS:
        raise ValueError("a resync request is a 16-byte nonce and a reason 1..3")
    return bytes(nonce) + bytes((reason,))


def decode_resync_request(payload):
    """Returns (nonce, reason name); raises InvalidPacket(bad_payload)."""
    if len(payload) != RESYNC_NONCE_SIZE + 1 or payload[-1] not in RESYNC_REASONS:
        raise InvalidPacket("bad_payload", "resync request must be a 16-byte nonce and a known reason")
    return bytes(payload[:RESYNC_NONCE_SIZE]), RESYNC_REASONS[payload[-1]]


def encode_resync(nonce, device_seq, host_seq):
    if len(nonce) != RESYNC_NONCE_SIZE:
        raise ValueError("the nonce is 16 bytes")
    return bytes(nonce) + struct.pack(">II", device_seq, host_seq)


def decode_resync(payload):
    """Returns (nonce, highest device seq stored, host seq); raises InvalidPacket(bad_payload)."""
    if len(payload) != RESYNC_NONCE_SIZE + 8:
        raise InvalidPacket("bad_payload", "resync answer must be 24 bytes")
    device_seq, host_seq = struct.unpack(">II", bytes(payload[RESYNC_NONCE_SIZE:]))
    return bytes(payload[:RESYNC_NONCE_SIZE]), device_seq, host_seq


def encode_cumulative_ack(highest, bitmap, commands=()):
    """highest: the highest device seq stored; bitmap: bit i set when seq
    highest - i is stored (bit 0, highest itself, is set whenever highest > 0)."""
    if not 0 <= highest <= 0xFFFFFFFF or not 0 <= bitmap < (1 << 64):
        raise ValueError("a cumulative ack is a u32 seq and a 64-bit bitmap")
    return struct.pack(">IQ", highest, bitmap) + encode_commands(commands)


def decode_cumulative_ack(payload):
    """Returns (highest, bitmap, [(opcode, argument bytes)])."""
    if len(payload) < 12:
        raise InvalidPacket("bad_payload", "cumulative ack shorter than 12 bytes")
    highest, bitmap = struct.unpack(">IQ", bytes(payload[:12]))
    return highest, bitmap, decode_commands(payload[12:])


def stored_seqs(highest, bitmap):
    """The device seqs a cumulative ack says are stored, newest first."""
    return [highest - i for i in range(CUMULATIVE_WINDOW) if bitmap >> i & 1 and highest - i > 0]
