"""Device keys on the host: made here, registered, replaced and rotated.
Nothing in this module touches a board; provisioning (tools) writes the board
half, the receiver promotes a pending key at its first packet.

    key = generate_key()
    device = register(storage, "greenhouse", key)
    epoch, key = rotate(storage, "greenhouse")       # queues CMD_ROTATE_KEY

One rule for epochs: every new key of a device gets next_epoch(current), so
packets under an old key stand out in the logs and a board never holds two
keys under one epoch.
"""
import os

from mpseal import control
from mpseal.keys import MASTER_KEY_SIZE
from mpseal_host.errors import MpsealError
from mpseal_host.storage import NoSuchDevice

EPOCHS = 256  # the header's epoch is one byte; it wraps, and only two are ever live


class RegistryError(MpsealError):
    pass


class RotationPending(RegistryError):
    """A rotation waits for the device's first packet under the new epoch."""

    def __init__(self, name, epoch):
        RegistryError.__init__(self, "device %r has a rotation to epoch %d waiting for its first packet under that "
                                     "epoch" % (name, epoch))
        self.name, self.epoch = name, epoch


def generate_key():
    """A fresh master key from the OS's CSPRNG (os.urandom never falls back to a weak source)."""
    return os.urandom(MASTER_KEY_SIZE)


def check_key(key):
    if not isinstance(key, (bytes, bytearray)) or len(key) != MASTER_KEY_SIZE:
        raise RegistryError("a device key must be %d bytes (%d hex digits)" % (MASTER_KEY_SIZE, 2 * MASTER_KEY_SIZE))
    return bytes(key)


def next_epoch(epoch):
    return (epoch + 1) % EPOCHS


def require_device(storage, name):
    device = storage.get_device(name)
    if device is None:
        raise NoSuchDevice("no device named %r" % (name,))
    return device


def register(storage, name, key):
    """A new device under epoch 0; the storage picks its id."""
    return storage.add_device(name, key=check_key(key), epoch=0)


def replace_key(storage, name, key):
    """A re-provisioned device's new key, current at once (the board already has it). Returns the epoch."""
    device = require_device(storage, name)
    epoch = next_epoch(device.epoch)
    storage.set_key(name, epoch, check_key(key))
    return epoch


def replacement_epoch(device):
    """The epoch replace_key will give `device` (the board's config is written first)."""
    return next_epoch(device.epoch)


def rotate(storage, name, key=None):
    """Queues a rotation: the new key travels to the device inside a command
    sealed with its current key, rides on the next ack, and stays 'pending'
    (the host accepts both epochs) until the first packet under it. Returns
    (new epoch, new key)."""
    device = require_device(storage, name)
    if device.pending_epoch is not None:
        # Replacing the pending key now could strand a board that already
        # took it from an ack: it would seal under a key the host forgot.
        raise RotationPending(name, device.pending_epoch)
    key = check_key(key) if key is not None else generate_key()
    epoch = next_epoch(device.epoch)
    storage.add_pending_key(name, epoch=epoch, key=key)
    storage.queue_command(name, control.rotate_key(epoch, key))
    return epoch, key
