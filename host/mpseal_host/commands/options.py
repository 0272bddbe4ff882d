"""Options every command that opens the receiver's database shares: one
way to find it (mpseal_host.settings), one way to open it, one HOST:PORT
parser."""
import os
import sys

from mpseal_host import settings
from mpseal_host.addresses import parse_host_port
from mpseal_host.errors import UserError
from mpseal_host.storage import open_storage


def add_db_option(parser):
    parser.add_argument("--db", default=None, metavar="PATH_OR_URL",
                        help="receiver database: a SQLite file or a postgresql://user@host/db URL"
                        " (default: $MPSEAL_DB, then the config file's db, then %s)"
                        % os.path.join("~/.local/share/mpseal", settings.DB_FILE))


def _is_url(location):
    return "://" in location


def open_db(args, create=False, serving=False):
    """The storage the command should use. create=False (commands that read
    or change what the receiver stored) refuses a database that does not
    exist, so a typo never shows an empty one; create=True (receive,
    devices add, provision) makes it, and says where. serving=True: a
    long-running receiver (the backend runs its upkeep in the background)."""
    location, source = settings.database_location(getattr(args, "db", None))
    args.db = location
    if not _is_url(location) and not os.path.exists(location):
        if not create:
            raise UserError("no receiver database at %s (from %s): start 'mpseal receive' or provision a device "
                            "first, or point --db / $MPSEAL_DB at the right file" % (location, source))
        folder = os.path.dirname(os.path.abspath(location))
        if source == "the data directory":
            os.makedirs(folder, mode=0o700, exist_ok=True)
        storage = open_storage(location, serving=serving)
        print("mpseal: created a new receiver database at %s (from %s)" % (location, source), file=sys.stderr)
        return storage
    return open_storage(location, serving=serving)


def queue_command(args, device, command):
    """Queues one command for a device in the command's database; returns its id."""
    storage = open_db(args)
    try:
        return storage.queue_command(device, command)
    finally:
        storage.close()


def address_option(text, flag, default_port=None, listen=False):
    """'HOST:PORT' (or 'off' -> None) from a command-line flag, as a UserError naming the flag."""
    if text.lower() == "off":
        return None
    try:
        return parse_host_port(text, default_port, listen)
    except ValueError as exc:
        raise UserError("%s: %s" % (flag, exc))
