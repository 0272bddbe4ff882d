"""`mpseal` command line: a table of thin subcommands over library calls.

Each module named in COMMAND_MODULES defines `register(subparsers)`, which adds
its subcommands with `set_defaults(func=...)`; func(args) returns an exit code.
"""
import argparse
import importlib
import sys

from mpseal_host.errors import UserError

COMMAND_MODULES = (
    "mpseal_host.commands.packets",  # keygen, seal, unseal, inspect
    "mpseal_host.commands.receiver",  # receive, devices, stats, command
    "mpseal_host.commands.sms",  # sms-ingest
    "mpseal_tools.commands_deploy",  # build, deploy, webrepl, vboard
    "mpseal_tools.commands_board",  # flash, provision, monitor, rotate-key
)


def build_parser():
    parser = argparse.ArgumentParser(prog="mpseal", description="End-to-end sealed telemetry for ESP8266 MicroPython boards.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a module not written yet
                raise
            continue
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
