"""`mpseal provision NAME`: a fresh key for a device, registered in the
receiver's database and written to the board's /config.json, in one step.
The host half (key, registration, epochs) is mpseal_host.registry; this
module is the board half and the order of the two.

Order (so a failure never leaves host and board disagreeing silently):
1. read the local secrets file (Wi-Fi, receiver address); refuse if missing;
   build the whole /config.json (sensors from --sensor or the secrets file's
   config:, transports from --transport or config:) and check every key
   (board_config.check_config): a typo or bad value stops here, naming it;
2. refuse to replace an existing device's key without --force;
3. connect to the board (serial or WebREPL) before touching the database;
4. new device: register it first (the database picks its id), then write the
   board; if the board write fails, the registration is removed again.
   Existing device (--force): write the board first, then replace the key.
The key comes from os.urandom and is printed only with --show-key.
"""
import json
import os
import stat
import sys

import yaml

from mpseal.keys import MASTER_KEY_SIZE
from mpseal_host import registry
from mpseal_host.errors import MpsealError, UserError
from mpseal_tools.board.connection import BoardError
from mpseal_tools.board_config import ConfigCheckError, check_config, parse_sensor

CONFIG_PATH = "/config.json"
SEQ_PATH = "/seq.dat"  # the firmware's sequence reservation, "R R\n" (firmware/seqstore.py)
PROTECTED_KEYS = ("device_id", "name", "key", "epoch")  # only provisioning decides these
DEFAULT_TRANSPORTS = ["udp", "http"]
DEFAULT_PIN_BOARD = "wemos"  # whose pin names (D2...) --sensor understands when --board is not given
SECRETS_TEMPLATE = """\
# mpseal local secrets and settings for `mpseal provision`.
# Never commit this file: it is in .gitignore and was created mode 0600.
wifi:
  ssid: ""              # the Wi-Fi network the boards join
  password: ""
receiver:
  host: ""              # address of the machine running `mpseal receive`, as the boards see it
  udp_port: 4740
  http_port: 8740
webrepl:
  password: ""          # the boards' WebREPL password (4-9 characters); empty = none set
# Optional: more /config.json keys for every board (docs/design.md), e.g.
# config:
#   transports: [udp, http]
#   sensors: [{type: dht22, pin: 4}, {type: battery}]
#   interval_s: 60
# Per board, `mpseal provision NAME --sensor dht22:D2 --sensor battery` and
# `--transport udp --transport sms` take the place of sensors/transports here.
"""
NO_SENSORS = ("no sensors given: name the board's sensors, e.g. --sensor dht22:D2 --sensor battery (or sensors: in "
              "the secrets file's config:); --sensor synthetic for made-up readings, marked as such")


class ProvisionError(MpsealError):
    pass


class SecretsFileError(ProvisionError):
    """The local secrets file is missing, unreadable or incomplete."""


class AlreadyProvisioned(ProvisionError):
    """The device exists; replacing its key needs the caller's explicit consent (force)."""


class KeyNotStored(ProvisionError):
    """The board has the new key, the database does not."""


def create_secrets_template(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SECRETS_TEMPLATE)


def load_secrets(path, err=None):
    """The parsed secrets file; creates the template (0600) and refuses when missing."""
    if not os.path.exists(path):
        create_secrets_template(path)
        raise SecretsFileError("no secrets file at %s: created one from a template (mode 0600, ignored by git); fill "
                               "in wifi.ssid, wifi.password and receiver.host, then run this again" % path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        print("mpseal: warning: %s is readable by other users (mode %o): run 'chmod 600 %s'" % (path, mode, path),
              file=err or sys.stderr)
    try:
        with open(path, encoding="utf-8") as f:
            secrets = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise SecretsFileError("%s is not valid YAML: %s" % (path, exc))
    except UnicodeDecodeError as exc:
        raise SecretsFileError("%s is not UTF-8 text (%s)" % (path, exc.reason))
    except IsADirectoryError:
        raise SecretsFileError("%s is a folder, not the secrets file" % path)
    except OSError as exc:
        raise SecretsFileError("cannot read %s: %s" % (path, exc.strerror or exc))
    if not isinstance(secrets, dict):
        raise SecretsFileError("%s must hold a mapping with wifi: and receiver: sections" % path)
    wifi = secrets.get("wifi") or {}
    receiver = secrets.get("receiver") or {}
    missing = [name for name, value in (("wifi.ssid", wifi.get("ssid")), ("receiver.host", receiver.get("host")))
               if not value]
    if missing:
        raise SecretsFileError("%s: fill in %s (the file is still the template), then run this again"
                        % (path, " and ".join(missing)))
    extra = secrets.get("config") or {}
    if not isinstance(extra, dict) or any(key in extra for key in PROTECTED_KEYS):
        raise SecretsFileError("%s: 'config:' must be a mapping and may not set %s" % (path, ", ".join(PROTECTED_KEYS)))
    return secrets


def board_config(device_id, name, key, epoch, secrets, transports=None, sensors=None):
    """The /config.json dict (docs/design.md) for this device, checked
    (ConfigCheckError names the bad key). `transports`/`sensors` (from the
    command line) win over the secrets file's config: section."""
    wifi = secrets["wifi"]
    receiver = secrets["receiver"]
    config = {
        "device_id": device_id, "name": name, "key": key.hex(), "epoch": epoch,
        "receiver": {"host": str(receiver["host"]), "udp_port": receiver.get("udp_port", 4740),
                     "http_port": receiver.get("http_port", 8740)},
        "transports": list(DEFAULT_TRANSPORTS),
        "wifi": {"ssid": str(wifi["ssid"]), "password": str(wifi.get("password") or "")},
    }
    webrepl_password = (secrets.get("webrepl") or {}).get("password")
    if webrepl_password:
        config["webrepl"] = {"password": str(webrepl_password)}
    config.update(secrets.get("config") or {})
    if transports:
        config["transports"] = list(transports)
    if sensors:
        config["sensors"] = list(sensors)
    if not config.get("sensors"):
        raise ConfigCheckError("config key 'sensors': " + NO_SENSORS)
    return check_config(config)


def parse_seq_reservation(raw):
    try:
        first, second = raw.split()
        if int(first) == int(second) > 0:
            return int(first)
    except (ValueError, AttributeError):
        pass
    return None


def continue_sequence(board, device):
    """Re-provisioning keeps the device id, and the host's replay window
    refuses numbers it has seen: make the board's counter start above the
    host's last sequence number (it only ever moves forward)."""
    floor = device.last_seq + 1
    try:
        current = parse_seq_reservation(board.get_file(SEQ_PATH))
    except BoardError:  # no /seq.dat: a freshly flashed board would start at 1
        current = None
    if current is None or current < floor:
        board.put_file(SEQ_PATH, b"%d %d\n" % (floor, floor))


CMDSEQ_PATH = "/cmdseq.dat"  # highest host seq the board ran commands under (firmware/commands.py)
QUEUE_DIR = "/queue"  # packets sealed but not acked (firmware/outbox.py)
# Run on the board: forgets packets queued under the old key (the host
# deletes that key, so they could never be accepted) and, for a new device,
# the command record of the old one.
CLEAR_STATE_SCRIPT = """import os
for p in %r:
    try:
        os.remove(p)
    except OSError:
        pass
try:
    for n in os.listdir(%r):
        os.remove(%r + '/' + n)
except OSError:
    pass
"""


def clear_board_state(board, new_device):
    """A board provisioned as a NEW device starts clean: no queue, no
    /cmdseq.dat, and /seq.dat at 1 (written, so that a missing /seq.dat
    later means a lost one, which the firmware recovers by a resync;
    docs/protocol.md section 5). Re-provisioning keeps the command record
    (same device, same host->device counter) and clears only the queue."""
    paths = [SEQ_PATH + ".tmp"]
    if new_device:
        paths += [CMDSEQ_PATH, CMDSEQ_PATH + ".tmp"]
    board.exec(CLEAR_STATE_SCRIPT % (tuple(paths), QUEUE_DIR, QUEUE_DIR))
    if new_device:
        board.put_file(SEQ_PATH, b"1 1\n")


def write_to_board(board, config, device=None):
    clear_board_state(board, new_device=device is None)
    if device is not None:
        continue_sequence(board, device)
    board.put_file(CONFIG_PATH, json.dumps(config, sort_keys=True).encode())
    board.soft_reset()  # the firmware starts with the new config


def open_target(port=None, host=None, secrets=None, board_name=None):
    from mpseal_tools.board.transports import open_board  # the deploy engineer's interface (docs/deploy.md)

    if host:
        password = (secrets.get("webrepl") or {}).get("password") or None
        return open_board(host=host, password=password)
    if not port and board_name:
        from mpseal_tools.board.catalog import find_port, get_board

        port = find_port(get_board(board_name))
    return open_board(port=port)


def provision(name, storage, secrets, connect, force=False, transports=None, key=None, sensors=None):
    """Registers `name` with a fresh key and writes its config through
    connect() -> board connection (a context manager). Returns (Device, key)."""
    from mpseal_host.storage import StorageError

    board_config(0, name, bytes(MASTER_KEY_SIZE), 0, secrets, transports, sensors)  # checked before anything is touched
    existing = storage.get_device(name)
    if existing is not None and not force:
        raise AlreadyProvisioned("device %r already exists (id %d, key epoch %d): provisioning again replaces its key, "
                                 "and the board must then get the new config" % (name, existing.id, existing.epoch))
    key = registry.check_key(key) if key is not None else registry.generate_key()
    with connect() as board:
        if existing is None:
            device = registry.register(storage, name, key)
            try:
                write_to_board(board, board_config(device.id, name, key, 0, secrets, transports, sensors))
            except BaseException:
                storage.remove_device(name)  # nothing was stored under it yet
                raise
        else:
            epoch = registry.replacement_epoch(existing)
            write_to_board(board, board_config(existing.id, name, key, epoch, secrets, transports, sensors), existing)
            try:
                registry.replace_key(storage, name, key)
            except StorageError as exc:
                raise KeyNotStored("the board has its new key but the database could not store it (%s)" % exc)
    return storage.get_device(name), key


def receiver_host_warning(host):
    """Why boards may not reach `host`, or None. Loopback never works from a
    board; an address that is not this machine's is fine only when the
    receiver runs elsewhere, so that is a warning, not an error."""
    from mpseal_host.addresses import is_local_address, local_addresses

    mine = ", ".join("%s %s" % item for item in local_addresses() if not item[1].startswith("127.")) or "none found"
    if host in ("localhost", "::1") or str(host).startswith("127."):
        return ("receiver.host is %s: a board cannot reach this machine's loopback; use an address on the boards' "
                "network (this machine: %s)" % (host, mine))
    if not is_local_address(host):
        return ("receiver.host %s is not an address of this machine (this machine: %s); fine if 'mpseal receive' "
                "runs on that host, otherwise the boards' readings go nowhere" % (host, mine))
    return None


def board_choices(args):
    """(transports, sensors) from --transport / --sensor, checked against the
    board (boards.yaml; wemos's pin names when --board is not given)."""
    from mpseal_tools.board.catalog import get_board

    board = get_board(args.board or DEFAULT_PIN_BOARD)
    transports = list(args.transport or [])
    if args.board:
        refused = [t for t in transports if t not in board.transports]
        if refused:  # never dropped silently: the user asked for it
            raise UserError("--transport %s: the %s board has no such transport (boards.yaml: %s)"
                            % (", ".join(refused), board.name, ", ".join(board.transports)))
    sensors = [parse_sensor(text, board) for text in args.sensor or []]
    return transports or None, sensors or None


def cli(args):
    from mpseal_host.commands.options import open_db

    secrets = load_secrets(args.secrets)
    warning = receiver_host_warning(secrets["receiver"]["host"])
    if warning:
        print("mpseal: warning: %s" % warning, file=sys.stderr)
    transports, sensors = board_choices(args)
    board_config(0, args.name, bytes(MASTER_KEY_SIZE), 0, secrets, transports, sensors)  # before any database is made
    storage = open_db(args, create=True)
    try:
        device, key = provision(args.name, storage, secrets,
                                lambda: open_target(args.port, args.host, secrets, args.board),
                                force=args.force, transports=transports, sensors=sensors)
    finally:
        storage.close()
    where = "WebREPL at %s" % args.host if args.host else "serial port %s" % (args.port or "(detected)")
    print("mpseal: provisioned %r as device %d, key epoch %d: %s written over %s, registered in %s"
          % (device.name, device.id, device.epoch, CONFIG_PATH, where, args.db))
    if args.show_key:
        print("key: %s" % key.hex())
    else:
        print("mpseal: the key was not printed (use --show-key to see it)")
    return 0
