"""Options every command that opens the receiver's database shares: one
default path, one way to open it, one HOST:PORT parser."""
import os

from mpseal_host.addresses import parse_host_port
from mpseal_host.errors import UserError
from mpseal_host.storage import DEFAULT_DB, open_storage


def add_db_option(parser):
    parser.add_argument("--db", default=DEFAULT_DB, help="receiver database (default ./%s)" % DEFAULT_DB)


def open_db(args, must_exist=False):
    """The storage at --db. must_exist: for commands that only make sense on
    the receiver's existing database (a typo must not create an empty one)."""
    if must_exist and not os.path.exists(args.db):
        raise UserError("no receiver database at %s: give --db PATH (the file 'mpseal receive' uses)" % args.db)
    return open_storage(args.db)


def address_option(text, flag, default_port=None, listen=False):
    """'HOST:PORT' (or 'off' -> None) from a command-line flag, as a UserError naming the flag."""
    if text.lower() == "off":
        return None
    try:
        return parse_host_port(text, default_port, listen)
    except ValueError as exc:
        raise UserError("%s: %s" % (flag, exc))
