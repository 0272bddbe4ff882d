"""`mpseal` command line: one static table of thin subcommands over library calls.

The table lives here, at the top of the import graph (tools -> host ->
shared): host code never names tools. Each module in COMMANDS defines
`register(subparsers)`, which adds its subcommands with
`set_defaults(func=...)`; func(args) returns an exit code. Command modules
import their libraries inside each command, so `mpseal --help` stays cheap.

Errors come in layers (esptool's one FatalError, caught once): libraries raise
typed errors that say what is wrong; the command layer turns them into
UserError with what to do; `main` alone prints `mpseal: ...` and exits.
"""
import argparse
import logging
import sys

import mpseal

from mpseal_host import registry
from mpseal_host.commands import export, keys, packets, receiver, service, sms, ttn
from mpseal_host.errors import MpsealError
from mpseal_host.storage import NoSuchDevice, StorageUnavailable
from mpseal_tools import build, provision
from mpseal_tools.board import catalog, flash
from mpseal_tools.commands import board, deploy, ota

COMMANDS = (
    packets,  # keygen, seal, unseal, inspect
    receiver,  # receive, devices, stats, command
    keys,  # rotate-key
    service,  # install-service
    sms,  # sms-ingest, sms-numbers
    export,  # export (readings by time range, CSV / JSON Lines)
    ttn,  # ttn (LoRaWAN via The Things Network: MQTT or webhook)
    deploy,  # build, deploy, webrepl, vboard
    board,  # flash, provision, monitor
    ota,  # release-key, release, ota offer
)

# What to do, for library errors that reach the handler: the only place that
# knows the flags and make variables. First match (isinstance) wins; fields
# of the error fill the {placeholders}.
HINTS = (
    (StorageUnavailable, "check the database path given with --db"),
    (NoSuchDevice, "see 'mpseal devices list', or provision it first (mpseal provision NAME)"),
    (registry.RotationPending, "wait until it has sent a reading ('mpseal devices list' shows the epoch), then "
                               "rotate again"),
    (build.NoBuild, "run 'make build BOARD={board}' (mpseal build --board {board}) first"),
    (flash.FirmwareNotFound, "check the path given with --firmware (make: FIRMWARE=)"),
    (flash.ToolMissing, "run 'make venv' to install it"),
    (catalog.PortNotFound, "plug the board in with a data cable, or name the port with --port (make: PORT=/dev/ttyUSB0)"),
    (catalog.SeveralPorts, "choose one with --port (make: PORT=...)"),
    (provision.AlreadyProvisioned, "run again with --force (make: FORCE=1) to replace its key"),
    (provision.KeyNotStored, "run the same command again with --force"),
)


def describe(exc):
    """`what went wrong — what to do` for an error from any layer."""
    message = str(exc) or exc.__class__.__name__
    for kind, hint in HINTS:
        if isinstance(exc, kind):
            return "%s — %s" % (message, hint.format(**vars(exc)))
    return message


def build_parser():
    parser = argparse.ArgumentParser(prog="mpseal", description="End-to-end sealed telemetry for ESP8266 MicroPython boards.")
    parser.add_argument("--version", action="version", version="mpseal %s" % mpseal.__version__)
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    noise.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def configure_logging(args):
    """One place sets how much the long-running commands (receive) log."""
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(level)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args)
    try:
        return args.func(args) or 0
    except MpsealError as exc:  # UserError from the command layer, typed errors from libraries
        print("mpseal: %s" % describe(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mpseal ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
