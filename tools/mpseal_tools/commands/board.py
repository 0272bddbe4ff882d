"""flash, monitor, provision, configure: thin CLI shells over library calls (rotate-key, which
never touches a board, is a host command: mpseal_host/commands/keys.py).

Library modules are imported inside each command so that `mpseal --help`
works even while one of them (or a part it needs) is broken or missing.
"""
from mpseal_host.commands.options import add_db_option

DEFAULT_SECRETS = "secrets.yaml"


def cmd_flash(args):
    from mpseal_tools.board import flash
    from mpseal_tools.board.catalog import get_board

    board = get_board(args.board)
    if args.dry_run:
        return flash.dry_run(board, args.port, args.firmware, connect_attempts=args.connect_attempts)
    return flash.flash(board, args.port, args.firmware, connect_attempts=args.connect_attempts)


def cmd_monitor(args):
    from mpseal_tools.board.catalog import find_port, get_board
    from mpseal_tools.board.monitor import monitor

    board = get_board(args.board) if args.board else None
    port = args.port or find_port(board)
    baud = args.baud or (board.repl_baud if board else 115200)
    return monitor(port, baud)


def cmd_provision(args):
    from mpseal_tools import provision

    return provision.cli(args)


def cmd_configure(args):
    from mpseal_tools import configure

    return configure.cli(args)


def register(subparsers):
    p = subparsers.add_parser("flash", help="erase a board and write MicroPython onto it (esptool)")
    p.add_argument("--board", default="wemos", help="board name from boards.yaml (default wemos)")
    p.add_argument("--port", help="serial port (default: the one port whose USB ID matches the board)")
    p.add_argument("--firmware", metavar="PATH", help="image to write instead of the board's pinned download")
    p.add_argument("--dry-run", action="store_true", help="print the exact esptool commands and do nothing")
    p.add_argument("--connect-attempts", type=int, metavar="N",
                   help="esptool connection attempts (esptool's default: 7)")
    p.set_defaults(func=cmd_flash)

    p = subparsers.add_parser("monitor", help="print the board's serial output (Ctrl-C to quit)")
    p.add_argument("--port", help="serial port (default: the one port with a known ESP8266 USB bridge)")
    p.add_argument("--board", help="board name from boards.yaml (narrows port detection, sets the baud rate)")
    p.add_argument("--baud", type=int, help="baud rate (default: the board's REPL rate, 115200)")
    p.set_defaults(func=cmd_monitor)

    p = subparsers.add_parser("provision", help="give a device a fresh key, register it, write /config.json to it")
    p.add_argument("name", help="device name, e.g. greenhouse")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--port", help="serial port of the board")
    target.add_argument("--host", help="address of the board's WebREPL (host or host:port)")
    p.add_argument("--board", default=None, help="board name from boards.yaml (port detection, transports, pin names)")
    p.add_argument("--sensor", action="append", metavar="TYPE[:PIN]",
                   help="a sensor on the board (repeatable): dht22:D2, dht11:4, ds18b20:D5, battery, battery:4.2, "
                        "synthetic (made-up readings, marked as such); pin names from boards.yaml")
    p.add_argument("--transport", action="append", metavar="NAME",
                   help="a transport, in the order tried (repeatable): udp, http, sms, ... (default: the secrets "
                        "file's config: transports, else udp then http)")
    p.add_argument("--force", action="store_true", help="replace the key of a device that already exists")
    p.add_argument("--show-key", action="store_true", help="print the new key (it is never printed otherwise)")
    add_db_option(p)
    p.add_argument("--secrets", default=DEFAULT_SECRETS, help="local secrets file (default ./%s)" % DEFAULT_SECRETS)
    p.set_defaults(func=cmd_provision)

    p = subparsers.add_parser("configure", help="change a provisioned board's Wi-Fi and receiver address (key kept)")
    p.add_argument("name", nargs="?", help="device name: refused if the board is provisioned as another one")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--port", help="serial port of the board")
    target.add_argument("--host", help="address of the board's WebREPL (host or host:port)")
    p.add_argument("--board", default=None, help="board name from boards.yaml (port detection)")
    p.add_argument("--receiver-host", help="receiver address as the board sees it (default: the secrets file's)")
    p.add_argument("--udp-port", type=int, help="receiver UDP port (default: the secrets file's)")
    p.add_argument("--http-port", type=int, help="receiver HTTP port (default: the secrets file's)")
    p.add_argument("--wifi-ssid", help="Wi-Fi network (default: the secrets file's; the password is always taken from it)")
    p.add_argument("--secrets", default=DEFAULT_SECRETS, help="local secrets file (default ./%s)" % DEFAULT_SECRETS)
    p.set_defaults(func=cmd_configure)
