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
import sys

from mpseal_host.commands import packets, receiver, sms
from mpseal_host.errors import UserError
from mpseal_tools.commands import board, deploy

COMMANDS = (
    packets,  # keygen, seal, unseal, inspect
    receiver,  # receive, devices, stats, command
    sms,  # sms-ingest, sms-numbers
    deploy,  # build, deploy, webrepl, vboard
    board,  # flash, provision, monitor, rotate-key
)


def build_parser():
    parser = argparse.ArgumentParser(prog="mpseal", description="End-to-end sealed telemetry for ESP8266 MicroPython boards.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UserError as exc:
        print("mpseal: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mpseal ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
