"""`mpseal rotate-key NAME`: a new key travels to the device inside a command
sealed with its current key; no re-flashing, any transport.

The host stores the new key as 'pending' (it then accepts both epochs) and
queues CMD_ROTATE_KEY, which rides on the next ack to the device. The board
writes the key and epoch to /config.json and seals from then on under the new
epoch; the host's first authenticated packet under it promotes the pending key
and retires the old one (docs/receiver.md). Readings sealed under the old key
and still in the board's queue stay valid until that moment.
"""
import os

from mpseal import control
from mpseal.keys import MASTER_KEY_SIZE
from mpseal_host.errors import UserError

EPOCHS = 256  # the header's epoch is one byte; it wraps, and only two are ever live


def rotate_key(storage, name, key=None):
    """Queues a rotation for device `name`. Returns (new epoch, new key)."""
    device = storage.get_device(name)
    if device is None:
        raise UserError("no device named %r: provision it first (mpseal provision %s)" % (name, name))
    if device.pending_epoch is not None:
        # Replacing the pending key now could strand a board that already
        # took it from an ack: it would seal under a key the host forgot.
        raise UserError("device %r has a rotation to epoch %d waiting for its first packet under that epoch; wait until "
                        "it has sent a reading ('mpseal devices' shows the epoch), then rotate again"
                        % (name, device.pending_epoch))
    key = key or os.urandom(MASTER_KEY_SIZE)
    epoch = (device.epoch + 1) % EPOCHS
    storage.add_pending_key(name, epoch=epoch, key=key)
    storage.queue_command(name, control.rotate_key(epoch, key))
    return epoch, key


def cli(args):
    from mpseal_host.storage import Storage

    if not os.path.exists(args.db):
        raise UserError("no receiver database at %s: give --db PATH (the file 'mpseal receive' uses)" % args.db)
    storage = Storage(args.db)
    try:
        epoch, key = rotate_key(storage, args.name)
    finally:
        storage.close()
    print("mpseal: key epoch %d queued for %r: it goes out sealed under the current key in the next ack; the old key "
          "is retired at the device's first packet under epoch %d" % (epoch, args.name, epoch))
    if args.show_key:
        print("key: %s" % key.hex())
    return 0
