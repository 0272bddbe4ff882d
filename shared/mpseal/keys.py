# Key schedule: one 32-byte master key per device (and key epoch). HKDF-SHA256
# derives, per direction, an AES-128 encryption key, an AES-128 IV key (compact
# profile only) and an HMAC-SHA256 key. Distinct labels per direction mean a
# host->device packet can never verify as device->host, and vice versa.
from mpseal.aes import prepare_key
from mpseal.hmac import HmacSha256

MASTER_KEY_SIZE = 32
TO_HOST = 0  # device -> host: readings
TO_DEVICE = 1  # host -> device: acks, commands

SALT = b"mpseal/1 salt"
LABELS = (b"mpseal/1 device->host", b"mpseal/1 host->device")


class DirectionKeys:
    def __init__(self, okm):
        self.enc_key = okm[0:16]
        self.iv_key = okm[16:32]
        self.mac_key = okm[32:64]
        self.enc = prepare_key(self.enc_key)
        self.iv = prepare_key(self.iv_key)
        self.mac = HmacSha256(self.mac_key)


class DeviceKeys:
    """Derived keys for one master key; derive once and reuse (HKDF costs
    several HMACs, too much per packet on a board or at 20k packets/s)."""

    def __init__(self, master_key):
        if len(master_key) != MASTER_KEY_SIZE:
            raise ValueError("master key must be %d bytes" % MASTER_KEY_SIZE)
        # Imported here, not at the top: a board derives keys at boot (and on
        # rotate-key) only, and can then let the HKDF code be collected.
        from mpseal.hkdf import hkdf_expand, hkdf_extract

        prk = hkdf_extract(SALT, master_key)
        self.directions = (
            DirectionKeys(hkdf_expand(prk, LABELS[TO_HOST], 64)),
            DirectionKeys(hkdf_expand(prk, LABELS[TO_DEVICE], 64)),
        )


def as_keys(key):
    """Accepts DeviceKeys or a 32-byte master key."""
    if isinstance(key, DeviceKeys):
        return key
    return DeviceKeys(key)
