"""build, deploy, webrepl, vboard: getting code onto a board (docs/deploy.md)."""
import asyncio
import os
import signal
import sys

from mpseal_host.commands.options import address_option
from mpseal_host.errors import UserError

DEFAULT_BOARD = "wemos"
WEBREPL_PORT = 8266


def cmd_build(args):
    from mpseal_tools.board.catalog import get_board
    from mpseal_tools.build import build
    from mpseal_tools.deploy import Progress

    get_board(args.board)  # an unknown board is named with the choices, before anything is built

    progress = Progress(enabled=not args.no_progress)

    def step(done, total, target):
        progress.step("[%d/%d] %s" % (done, total, target))

    manifest = build(args.board, out_root=args.out, progress=step, simulator=args.simulator)
    total = sum(f["size"] for f in manifest["files"])
    progress.done("built %d files, %d bytes, into %s/%s"
                  % (len(manifest["files"]), total, args.out or "build", args.board))


def cmd_deploy(args):
    from mpseal_tools.board.transports import open_board
    from mpseal_tools.build import load_manifest
    from mpseal_tools.deploy import Progress, deploy

    from mpseal_tools.build import NoBuild

    try:
        build_dir, manifest = load_manifest(args.board, args.out)
    except NoBuild:  # nothing built yet: build it first, so blank board to running code is one command
        print("mpseal: no build for %s yet: building it first" % args.board, flush=True)
        args.simulator = False
        cmd_build(args)
        build_dir, manifest = load_manifest(args.board, args.out)
    with open_board(port=args.port, tool=args.tool, board_name=args.board) as board:
        deploy(board, build_dir, manifest, clean=args.clean, progress=Progress(enabled=not args.no_progress),
               reset=not args.no_reset)


def _webrepl_password(args):
    password = args.password or os.environ.get("MPSEAL_WEBREPL_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise UserError("the WebREPL password is missing: pass --password or set MPSEAL_WEBREPL_PASSWORD")
        import getpass

        password = getpass.getpass("WebREPL password: ")
    return password


def _webrepl_open(args):
    from mpseal_tools.board.webrepl import WebReplConnection

    return WebReplConnection(args.host, _webrepl_password(args))


def cmd_webrepl_upload(args):
    from mpseal_tools.build import load_manifest
    from mpseal_tools.deploy import Progress, deploy

    build_dir, manifest = load_manifest(args.board, args.out)
    with _webrepl_open(args) as board:
        deploy(board, build_dir, manifest, clean=args.clean, progress=Progress(enabled=not args.no_progress),
               reset=not args.no_reset)


def cmd_webrepl_put(args):
    from mpseal_tools.deploy import Progress

    try:
        with open(args.local, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserError("cannot read %s: %s" % (args.local, exc.strerror))
    remote = args.remote
    if remote.endswith("/"):
        remote += os.path.basename(args.local)
    progress = Progress(enabled=not args.no_progress)
    with _webrepl_open(args) as board:
        board.put_file(remote, data, progress.bytes_callback(remote))
    progress.done("%s -> %s:%s (%d bytes)" % (args.local, args.host, remote, len(data)))


def cmd_webrepl_get(args):
    with _webrepl_open(args) as board:
        data = board.get_file(args.remote)
    local = args.local or os.path.basename(args.remote)
    if local == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    with open(local, "wb") as f:
        f.write(data)
    print("%s:%s -> %s (%d bytes)" % (args.host, args.remote, local, len(data)), file=sys.stderr)


def cmd_webrepl_ls(args):
    with _webrepl_open(args) as board:
        for entry in board.ls(args.path, recursive=args.recursive):
            print("%8s %s" % ("<dir>" if entry.is_dir else entry.size, entry.path))


def parse_size(text):
    units = {"k": 1024, "m": 1024 * 1024}
    try:
        if text[-1].lower() in units:
            return int(float(text[:-1]) * units[text[-1].lower()])
        return int(text)
    except (ValueError, IndexError):
        raise UserError("%r is not a size (e.g. 64k, 3m, 65536)" % text)


def cmd_vboard(args):
    from mpseal_tools.sim import vboard

    if args.fs_size:
        fs_bytes = parse_size(args.fs_size)
    else:
        from mpseal_tools.board.catalog import get_board

        fs_bytes = vboard.fs_bytes_for_flash(get_board(args.board).flash_size_bytes)
    webrepl = address_option(args.webrepl, "--webrepl", WEBREPL_PORT, listen=True) if args.webrepl else None
    if webrepl and not args.password:
        raise UserError("--webrepl needs --password (the board's WebREPL password, 4 to 9 characters)")
    if webrepl and webrepl[0] not in ("127.0.0.1", "localhost", "::1"):
        raise UserError("the virtual board listens on loopback only (use 127.0.0.1:PORT)")

    def ready(board):
        print("vboard: %s" % board.pty_path, flush=True)
        if webrepl:
            print("vboard: webrepl ws://%s:%d/" % board.webrepl_addr, flush=True)
        print("vboard: flash %s (%d KiB)" % (board.image, board.blocks * vboard.BLOCK_SIZE // 1024), flush=True)

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await vboard.run(args.flash, fs_bytes, webrepl, args.password, ready=ready)
        except asyncio.CancelledError:
            pass

    asyncio.run(main())


def _add_progress(p):
    p.add_argument("--no-progress", action="store_true", help="print only the summary")


def register(subparsers):
    p = subparsers.add_parser("build", help="compile shared/mpseal and firmware/ into build/<board>/ (mpy-cross)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board name from boards.yaml (default %(default)s)")
    p.add_argument("--out", help="build folder (default: build/ in the repository)")
    p.add_argument("--simulator", action="store_true",
                   help="also include the unix-port hardware seam, for a virtual board (`mpseal vboard`)")
    _add_progress(p)
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser("deploy", help="upload build/<board>/ over USB serial, sending only changed files")
    p.add_argument("--board", default=DEFAULT_BOARD)
    p.add_argument("--port", help="serial port (default: the only connected board with a known USB VID:PID)")
    p.add_argument("--tool", choices=("mpremote", "ampy"), default="mpremote")
    p.add_argument("--clean", action="store_true", help="also remove .py/.mpy files the build does not contain")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board at the end")
    p.add_argument("--out", help="build folder (default: build/ in the repository)")
    _add_progress(p)
    p.set_defaults(func=cmd_deploy)

    p = subparsers.add_parser("webrepl", help="files over Wi-Fi with MicroPython's WebREPL protocol")
    sub = p.add_subparsers(dest="webrepl_command", metavar="ACTION", required=True)

    def common(q):
        q.add_argument("--host", required=True, help="board address, HOST or HOST:PORT (port %d)" % WEBREPL_PORT)
        q.add_argument("--password", help="WebREPL password (or MPSEAL_WEBREPL_PASSWORD; asked when on a terminal)")
        _add_progress(q)

    q = sub.add_parser("upload", help="like deploy, over WebREPL")
    common(q)
    q.add_argument("--board", default=DEFAULT_BOARD)
    q.add_argument("--clean", action="store_true")
    q.add_argument("--no-reset", action="store_true")
    q.add_argument("--out")
    q.set_defaults(func=cmd_webrepl_upload)
    q = sub.add_parser("put", help="copy a local file to the board")
    common(q)
    q.add_argument("local")
    q.add_argument("remote", help="path on the board (ending in / keeps the local name)")
    q.set_defaults(func=cmd_webrepl_put)
    q = sub.add_parser("get", help="copy a file from the board")
    common(q)
    q.add_argument("remote")
    q.add_argument("local", nargs="?", help="local file (default: same name; - for standard output)")
    q.set_defaults(func=cmd_webrepl_get)
    q = sub.add_parser("ls", help="list files on the board")
    common(q)
    q.add_argument("path", nargs="?", default="/")
    q.add_argument("-r", "--recursive", action="store_true")
    q.set_defaults(func=cmd_webrepl_ls)

    p = subparsers.add_parser("vboard", help="run a virtual board (MicroPython unix port behind a pty)")
    p.add_argument("--flash", default=".mpseal/vboard", help="folder holding flash.img (default %(default)s)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board whose flash size to use (default %(default)s)")
    p.add_argument("--fs-size", help="filesystem size instead of the board's, e.g. 64k (a new image only)")
    p.add_argument("--webrepl", metavar="HOST:PORT", help="also serve WebREPL, e.g. 127.0.0.1:8266")
    p.add_argument("--password", help="WebREPL password")
    p.set_defaults(func=cmd_vboard)
