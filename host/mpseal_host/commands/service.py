"""install-service: a systemd unit that runs `mpseal receive` at boot, as the
user who installs it, on the database every other command finds
(mpseal_host.settings), so `mpseal provision` and the service agree."""
import getpass
import os
import shlex
import sys

from mpseal_host import settings
from mpseal_host.errors import UserError

UNIT_NAME = "mpseal.service"
SYSTEM_UNIT_DIR = "/etc/systemd/system"

UNIT = """\
# Written by `mpseal install-service`; docs/operations.md.
[Unit]
Description=mpseal receiver (sealed telemetry from ESP8266 boards)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{user}ExecStart={exec_start}
Environment=MPSEAL_DB={db}
Restart=on-failure
RestartSec=5
# The receiver needs its database folder and the network, nothing else.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
UMask=0077

[Install]
WantedBy={wanted_by}
"""


def unit_text(db, user=None, system=True, executable=None, extra_args=()):
    exec_start = shlex.join([executable or os.path.join(os.path.dirname(sys.executable), "mpseal"), "receive"]
                            + list(extra_args))
    return UNIT.format(user="User=%s\n" % user if system and user else "", exec_start=exec_start,
                       db=os.path.abspath(db), wanted_by="multi-user.target" if system else "default.target")


def unit_path(system):
    if system:
        return os.path.join(SYSTEM_UNIT_DIR, UNIT_NAME)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", UNIT_NAME)


def cmd_install_service(args):
    db, _ = settings.database_location(args.db)
    system = not args.user
    text = unit_text(db, user=getpass.getuser(), system=system, extra_args=args.receive_args or ())
    if not args.write:
        sys.stdout.write(text)
        print("# write it with: mpseal install-service --write%s" % ("" if system else " --user"), file=sys.stderr)
        return 0
    path = unit_path(system)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except PermissionError:
        raise UserError("no permission to write %s: run with sudo, or install a user unit with --user" % path)
    scope = "" if system else "--user "
    print("mpseal: wrote %s; start it with: systemctl %sdaemon-reload && systemctl %senable --now mpseal"
          % (path, scope, scope))
    return 0


def register(subparsers):
    p = subparsers.add_parser("install-service", help="print (or --write) a systemd unit running 'mpseal receive'")
    p.add_argument("--db", default=None, help="the database the service uses (default: as every command finds it)")
    p.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user) instead of a system one")
    p.add_argument("--write", action="store_true", help="write the unit file instead of printing it")
    p.add_argument("receive_args", nargs="*", metavar="-- RECEIVE-ARG",
                   help="extra arguments for 'mpseal receive', after --")
    p.set_defaults(func=cmd_install_service)
