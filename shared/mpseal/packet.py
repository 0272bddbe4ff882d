# Packet layout and the seal/open steps of docs/protocol.md, in that order.
#
#   header (11) = version u8 | type u8 | key epoch u8 | device id u32 | seq u32
#   v1 standard: header | IV (16, random) | AES-128-CBC ciphertext | tag (16)
#   v2 compact : header | AES-128-CBC ciphertext (IV derived) | tag (8)
#   tag = HMAC-SHA256(mac key of the direction, every byte before the tag)
import struct

from mpseal.aes import BLOCK_SIZE, cbc_decrypt, cbc_encrypt, const, ecb_encrypt_block, pad, random_bytes, unpad
from mpseal.hmac import compare_digest
from mpseal.keys import TO_DEVICE, TO_HOST, as_keys

VERSION_STANDARD = 1  # Wi-Fi, SMS: random IV on the wire, 16-byte tag
VERSION_COMPACT = 2  # LoRaWAN: IV derived from the header, 8-byte tag
TAG_SIZE = {VERSION_STANDARD: 16, VERSION_COMPACT: 8}
IV_ON_WIRE = {VERSION_STANDARD: 16, VERSION_COMPACT: 0}

TYPE_READING = 1
TYPE_ACK = 2
TYPE_COMMAND = 3
# 4 = resync request (device -> host), 5 = resync (host -> device): named in
# mpseal.control (TYPE_RESYNC_REQUEST, TYPE_RESYNC), not here, because every
# name this module defines is interned on a board for good (docs/firmware.md
# "Memory and size"); types 4 and 5 carry sequence 0 (docs/protocol.md 5).
# 6 = cumulative ack (host -> device, LoRaWAN: mpseal.control), a host seq.
TYPE_DIRECTION = {TYPE_READING: TO_HOST, TYPE_ACK: TO_DEVICE, TYPE_COMMAND: TO_DEVICE, 4: TO_HOST, 5: TO_DEVICE, 6: TO_DEVICE}
# (Type names for people, and Header as a dict, live in the host CLI:
# mpseal_host/commands/packets.py. A board never prints them.)

HEADER_FORMAT = ">BBBII"
_HEADER_SIZE = const(11)  # const(): folded at compile time, no name on a board
MAX_PACKET_SIZE = 512  # far above any transport's frame; bounds work per packet
MAX_SEQ = 0xFFFFFFFF


class InvalidPacket(ValueError):
    """The one error for a packet that must not be trusted (Fernet's
    InvalidToken habit). `reason` is one of the names listed in
    mpseal/errors.py ("bad_tag", "replay", ...): callers count and log it,
    and never branch on the message text."""

    def __init__(self, reason, detail=None):
        super().__init__(reason if detail is None else reason + ": " + detail)
        self.reason = reason


class Header:
    def __init__(self, version, type, epoch, device_id, seq):
        self.version = version
        self.type = type
        self.epoch = epoch
        self.device_id = device_id
        self.seq = seq

    def to_bytes(self):
        return struct.pack(HEADER_FORMAT, self.version, self.type, self.epoch, self.device_id, self.seq)


def _derived_iv(keys, header_bytes):
    # NIST SP 800-38A appendix C: an unpredictable IV from a unique nonce
    # encrypted under a key; (device, epoch, direction, seq) never repeats.
    return ecb_encrypt_block(keys.iv, header_bytes + bytes(BLOCK_SIZE - _HEADER_SIZE))


def seal(key, device_id, seq, payload, type=TYPE_READING, epoch=0, version=VERSION_STANDARD, iv=None):
    """Seals payload into a packet (bytes). `key`: DeviceKeys or the 32-byte
    master key. `iv` is for known-answer vectors only; leave it None."""
    if version not in TAG_SIZE:
        raise ValueError("unknown protocol version %r" % version)
    if type not in TYPE_DIRECTION:
        raise ValueError("unknown message type %r" % type)
    # resync messages (types 4, 5) carry sequence 0, all others 1..2**32-1
    if (seq == 0) != (3 < type < 6) or not 0 <= seq <= MAX_SEQ:
        raise ValueError("sequence number must be 1..2**32-1 (0 for resync messages, and only for them)")
    if not 0 <= epoch <= 255 or not 0 <= device_id <= 0xFFFFFFFF:
        raise ValueError("epoch must fit u8 and device id u32")
    keys = as_keys(key).directions[TYPE_DIRECTION[type]]
    # 1. header
    header = struct.pack(HEADER_FORMAT, version, type, epoch, device_id, seq)
    # 2. IV
    if version == VERSION_STANDARD:
        if iv is None:
            iv = random_bytes(BLOCK_SIZE)
        elif len(iv) != BLOCK_SIZE:
            raise ValueError("iv must be 16 bytes")
        body = header + iv
    else:
        if iv is not None:
            raise ValueError("the compact profile derives its IV")
        iv = _derived_iv(keys, header)
        body = header
    # 3. encrypt, 4. MAC everything so far, 5. append the tag
    body += cbc_encrypt(keys.enc, iv, pad(payload))
    packet = body + keys.mac.digest(body)[: TAG_SIZE[version]]
    if len(packet) > MAX_PACKET_SIZE:
        raise ValueError("payload too large: packet of %d bytes > %d" % (len(packet), MAX_PACKET_SIZE))
    return packet


def parse_header(packet):
    """Reads the cleartext header (no key needed). Raises InvalidPacket for
    framing errors; says nothing about authenticity."""
    if len(packet) > MAX_PACKET_SIZE:
        raise InvalidPacket("oversize", "%d bytes" % len(packet))
    if len(packet) < 1:
        raise InvalidPacket("truncated", "empty")
    version = packet[0]
    if version not in TAG_SIZE:
        raise InvalidPacket("bad_version", "version %d" % version)
    tag_size = TAG_SIZE[version]
    overhead = _HEADER_SIZE + IV_ON_WIRE[version] + tag_size
    if len(packet) < overhead + BLOCK_SIZE:
        raise InvalidPacket("truncated", "%d bytes, at least %d needed" % (len(packet), overhead + BLOCK_SIZE))
    if (len(packet) - overhead) % BLOCK_SIZE:
        raise InvalidPacket("bad_length", "ciphertext is not whole AES blocks")
    header = Header(*struct.unpack(HEADER_FORMAT, packet[:_HEADER_SIZE]))
    if header.type not in TYPE_DIRECTION:
        raise InvalidPacket("bad_type", "type %d" % header.type)
    # docs/protocol.md section 5: sequence 0 only on resync messages (their
    # uniqueness is the random nonce that starts their payload), so a resync
    # never enters a replay window and 0 is refused the same way everywhere.
    if (header.seq == 0) != (3 < header.type < 6):
        raise InvalidPacket("bad_seq")
    return header


def unseal(packet, key, direction=TO_HOST, window=None):
    """Opens a packet; returns (Header, payload bytes). Raises InvalidPacket.

    `direction` is the side we are on: TO_HOST accepts readings only, TO_DEVICE
    accepts acks and commands only (so a reflected packet never verifies).
    `window` (a ReplayWindow) is checked but not updated: call
    window.update(header.seq) once the payload has been acted on or stored."""
    header = parse_header(packet)
    if TYPE_DIRECTION[header.type] != direction:
        raise InvalidPacket("bad_type", "type %d is not valid in this direction" % header.type)
    keys = as_keys(key)
    check_tag(packet, header, keys)
    if window is not None:
        window.check(header.seq)
    return header, decrypt(packet, header, keys)


def check_tag(packet, header, keys):
    """Opening step 4: raises InvalidPacket(bad_tag) unless the tag is right.
    Constant time, and before anything is decrypted. `header` comes from
    parse_header(packet); `keys` is DeviceKeys."""
    tag_size = TAG_SIZE[header.version]
    mac = keys.directions[TYPE_DIRECTION[header.type]].mac
    if not compare_digest(mac.digest(packet[:-tag_size])[:tag_size], packet[-tag_size:]):
        raise InvalidPacket("bad_tag")


def decrypt(packet, header, keys):
    """Opening step 6, only after check_tag(): the payload, or
    InvalidPacket(bad_padding)."""
    d = keys.directions[TYPE_DIRECTION[header.type]]
    body = packet[: -TAG_SIZE[header.version]]
    if header.version == VERSION_STANDARD:
        iv = body[_HEADER_SIZE : _HEADER_SIZE + BLOCK_SIZE]
        ciphertext = body[_HEADER_SIZE + BLOCK_SIZE :]
    else:
        iv = _derived_iv(d, body[:_HEADER_SIZE])
        ciphertext = body[_HEADER_SIZE:]
    payload = unpad(cbc_decrypt(d.enc, iv, ciphertext))
    if payload is None:
        raise InvalidPacket("bad_padding")
    return payload
