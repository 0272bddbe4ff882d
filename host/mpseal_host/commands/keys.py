"""rotate-key: a device's new key travels inside a command sealed with its
current one (mpseal_host.registry.rotate); no board is touched here."""
from mpseal_host.commands.options import add_db_option, open_db


def cmd_rotate_key(args):
    from mpseal_host import registry

    storage = open_db(args)
    try:
        epoch, key = registry.rotate(storage, args.name)
    finally:
        storage.close()
    print("mpseal: key epoch %d queued for %r: it goes out sealed under the current key in the next ack; the old key "
          "is retired at the device's first packet under epoch %d" % (epoch, args.name, epoch))
    if args.show_key:
        print("key: %s" % key.hex())
    return 0


def register(subparsers):
    p = subparsers.add_parser("rotate-key", help="send a device a new key inside a command sealed with its current one")
    p.add_argument("name", help="device name")
    add_db_option(p)
    p.add_argument("--show-key", action="store_true", help="print the new key")
    p.set_defaults(func=cmd_rotate_key)
