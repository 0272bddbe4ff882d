"""Per-device cipher objects for the receiver's hot path.

mpseal.unseal/seal build a fresh AES object (key schedule) for every packet:
right for a board, but on the host that alone costs ~14 us of the ~21 us per
packet. HostKeys builds the ECB ciphers once per key and runs CBC itself
(P_i = D(C_i) xor C_{i-1}; C_i = E(P_i xor C_{i-1})), so one receiver core
opens a packet and seals its ack in a fraction of that. The byte layout,
header parsing, MAC (mpseal's HmacSha256) and padding are mpseal's own; the
tests check HostKeys against mpseal.seal/unseal both ways.
"""
import hmac
import os
import struct

from mpseal import errors
from mpseal.aes import BLOCK_SIZE, pad, unpad
from mpseal.errors import InvalidPacket
from mpseal.keys import TO_DEVICE, TO_HOST, DeviceKeys
from mpseal.packet import HEADER_FORMAT, HEADER_SIZE, MAX_PACKET_SIZE, TAG_SIZE, TYPE_DIRECTION, VERSION_STANDARD

_ZERO_TAIL = bytes(BLOCK_SIZE - HEADER_SIZE)


# The AES seam of the host: `cryptography` (OpenSSL) lets one ECB context be
# reused for every call (0.2 us per block); pycryptodome, always installed,
# costs ~3 us per call. Both are stateless in ECB over whole blocks.
try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def ecb_pair(key):
        """(encrypt_blocks, decrypt_blocks) for a 16-byte key."""
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        return cipher.encryptor().update, cipher.decryptor().update

    AES_BACKEND = "cryptography"
except ImportError:
    from Crypto.Cipher import AES

    def ecb_pair(key):
        ecb = AES.new(key, AES.MODE_ECB)
        return ecb.encrypt, ecb.decrypt

    AES_BACKEND = "pycryptodome"


def _xor(a, b):
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


class _Direction:
    def __init__(self, keys):
        self.encrypt_blocks, self.decrypt_blocks = ecb_pair(keys.enc_key)
        self.iv_block = ecb_pair(keys.iv_key)[0]
        self.mac = keys.mac.digest

    def iv_for(self, version, body):
        # v1 carries its IV after the header; v2 derives it (see mpseal.packet).
        if version == VERSION_STANDARD:
            return body[HEADER_SIZE : HEADER_SIZE + BLOCK_SIZE], body[HEADER_SIZE + BLOCK_SIZE :]
        return self.iv_block(body[:HEADER_SIZE] + _ZERO_TAIL), body[HEADER_SIZE:]


class HostKeys:
    """Derived keys plus ready cipher objects for one master key."""

    def __init__(self, master_key):
        self.device_keys = DeviceKeys(master_key)  # validates the length
        self._up = _Direction(self.device_keys.directions[TO_HOST])
        self._down = _Direction(self.device_keys.directions[TO_DEVICE])

    def verify(self, packet, header):
        """True when the tag of a device->host packet is right (constant time).
        `header` comes from mpseal.parse_header(packet)."""
        tag_size = TAG_SIZE[header.version]
        return hmac.compare_digest(self._up.mac(packet[:-tag_size])[:tag_size], packet[-tag_size:])

    def decrypt(self, packet, header):
        """Payload of a packet whose tag verified; InvalidPacket(bad_padding)."""
        body = packet[: -TAG_SIZE[header.version]]
        iv, ciphertext = self._up.iv_for(header.version, body)
        chain = iv + ciphertext[:-BLOCK_SIZE]
        payload = unpad(_xor(self._up.decrypt_blocks(ciphertext), chain))
        if payload is None:
            raise InvalidPacket(errors.BAD_PADDING)
        return payload

    def seal(self, device_id, seq, payload, type, epoch, version=VERSION_STANDARD):
        """A host->device packet (ack or command), byte for byte what
        mpseal.seal would make with the same IV."""
        if TYPE_DIRECTION.get(type) != TO_DEVICE:
            raise ValueError("the host seals acks and commands only")
        header = struct.pack(HEADER_FORMAT, version, type, epoch, device_id, seq)
        d = self._down
        if version == VERSION_STANDARD:
            iv = os.urandom(BLOCK_SIZE)  # never a weaker source: fail loudly instead
            out = [header, iv]
        else:
            iv = d.iv_block(header + _ZERO_TAIL)
            out = [header]
        data = pad(payload)
        previous = iv
        for i in range(0, len(data), BLOCK_SIZE):
            previous = d.encrypt_blocks(_xor(data[i : i + BLOCK_SIZE], previous))
            out.append(previous)
        body = b"".join(out)
        packet = body + d.mac(body)[: TAG_SIZE[version]]
        if len(packet) > MAX_PACKET_SIZE:
            raise ValueError("payload too large: packet of %d bytes" % len(packet))
        return packet
