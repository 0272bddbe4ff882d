# Runs INSIDE the MicroPython unix port as the "CPU" of the virtual board
# (tools/mpseal_tools/vboard.py owns the pty and speaks the REPL protocol; this
# script only executes what it is told). One process lives from one (soft)
# reset to the next, so globals persist between raw-REPL executions exactly as
# on a board, and a soft reset is simply a new process.
#
# Usage: micropython vboard_agent.py FLASH_IMAGE BLOCK_COUNT REPLY_FD
#
# Requests arrive on stdin:   b"<kind> <seq> <length>\n" + payload
#   boot   b"1"|b"0"  mount flash, run boot.py, and main.py when b"1" (friendly REPL)
#   exec   code       raw REPL: compile as a file, run, reply the traceback text
#   line   code       friendly REPL: compile as 'single' (echoes expression values)
# WebREPL file transfers, streamed (one open file at a time, as modwebrepl):
#   popen  path       open for writing (truncates, as modwebrepl's "wb")
#   pwrite data       append a chunk (a few KB: memory stays bounded)
#   pclose -          close; ENOSPC at the final flush is reported here
#   pabort path       close if open and remove the file: a failed put leaves no partial file
#   gopen  path       open for reading
#   gread  n          the next n bytes at most (b"" at the end)
#   gclose -          close
# Replies go to REPLY_FD (not stdout, which is the board's console):
#   b"<status> <seq> <length>\n" + payload   status: hello (once, seq 0) | done | ok | err
# err carries the errno. The host ignores a reply whose seq is not the request
# it waits for, so a reply repeated after a late Ctrl-C cannot be mistaken for
# the next request's.
# Program output goes straight to stdout, unbuffered, like a UART.
import io
import os
import sys

BLOCK_SIZE = 4096  # the ESP8266's flash sector; MicroPython's FlashBdev uses it too

# Opened before the flash replaces "/", while /dev is still reachable.
ctl = open("/dev/fd/" + sys.argv[3], "wb")
requests = sys.stdin.buffer


class FileBlockDevice:
    """The board's SPI flash as a block device backed by an image file, so
    littlefs on it behaves as on the chip (ENOSPC when full)."""

    def __init__(self, path, count):
        self.f = open(path, "r+b")
        self.count = count

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * BLOCK_SIZE + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self.f.seek(block * BLOCK_SIZE + (offset or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return BLOCK_SIZE
        return 0  # init, deinit, sync, erase: nothing to do for a file


seq = b"0"  # of the request being served


def reply(status, payload=b""):
    message = b"%s %s %d\n" % (status.encode(), seq, len(payload)) + payload
    sent = False
    while not sent:
        try:  # a late Ctrl-C must not swallow the reply the host waits for
            ctl.write(message)
            sent = True
        except KeyboardInterrupt:
            pass  # may come after the write: the host drops a repeated reply by its seq


def read_exactly(n):
    # A Ctrl-C while a request is still arriving must not lose its bytes (the
    # stream would be out of step): the read is retried, the interrupt dropped.
    data = b""
    while len(data) < n:
        try:
            chunk = requests.read(n - len(data))
            data += chunk
            if not chunk:
                raise SystemExit(0)  # the host went away: power off
        except KeyboardInterrupt:
            pass
    return data


def read_header():
    line = b""
    while not line.endswith(b"\n"):
        line += read_exactly(1)
    return line


def traceback_text(exc):
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    lines = buf.getvalue().split("\n")
    # Drop this agent's own frames: a board's traceback starts at the user's code.
    kept = [line for line in lines if "vboard_agent" not in line]
    return "\n".join(kept)


def mount_flash(image, count):
    bdev = FileBlockDevice(image, count)
    try:
        vfs = os.VfsLfs2(bdev)
    except OSError:
        # A fresh (all zero) image: format it, as MicroPython's _boot.py does on first boot.
        os.VfsLfs2.mkfs(bdev)
        vfs = os.VfsLfs2(bdev)
    os.umount("/")
    os.mount(vfs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


board_globals = {"__name__": "__main__"}


def run_source(source, mode):
    try:
        code = compile(source, "<stdin>", mode)
        exec(code, board_globals)
    except BaseException as exc:  # noqa: B902 - SystemExit/KeyboardInterrupt are reported, as a board does
        return traceback_text(exc)
    return ""


def run_file_if_exists(name):
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return
    try:
        exec(compile(source, name, "exec"), board_globals)
    except BaseException as exc:  # noqa: B902
        sys.stdout.write(traceback_text(exc))


def handle(kind, payload):
    if kind == b"boot":
        run_file_if_exists("boot.py")
        if payload == b"1":
            run_file_if_exists("main.py")
        reply("done")
    elif kind == b"exec":
        reply("done", run_source(payload.decode(), "exec").encode())
    elif kind == b"line":
        error = run_source(payload.decode(), "single")
        if error:
            sys.stdout.write(error)
        reply("done")
    elif kind in TRANSFERS:
        try:
            reply("ok", TRANSFERS[kind](payload) or b"")
        except OSError as exc:
            reply("err", str(exc.errno or EIO).encode())
    else:
        reply("err", b"22")  # EINVAL


EIO = 5
transfer = [None]  # the open file of a WebREPL put/get


def _close():
    f, transfer[0] = transfer[0], None
    if f is not None:
        f.close()


def _open(path, mode):
    _close()
    transfer[0] = open(path.decode(), mode)


def _current():
    if transfer[0] is None:
        raise OSError(EIO)  # e.g. the board was reset during the transfer
    return transfer[0]


def _abort(path):
    try:
        _close()
    except OSError:
        pass  # closing a file on a full flash may fail again: it is removed anyway
    try:
        os.remove(path.decode())
    except OSError:
        pass


TRANSFERS = {
    b"popen": lambda path: _open(path, "wb"),
    b"pwrite": lambda data: _current().write(data) and None,
    b"pclose": lambda _: _close(),
    b"pabort": _abort,
    b"gopen": lambda path: _open(path, "rb"),
    b"gread": lambda n: _current().read(int(n)),
    b"gclose": lambda _: _close(),
}


def serve_one():
    global seq
    kind, seq, length = read_header().split()
    payload = read_exactly(int(length))
    try:
        handle(kind, payload)
    except Exception as exc:  # noqa: BLE001 - e.g. MemoryError: answer, keep running
        reply("err", str(getattr(exc, "errno", EIO) or EIO).encode())


def serve_forever():
    # A Ctrl-C (SIGINT) that lands outside the user's code -- after the program
    # finished, while waiting for the next request -- is ignored, as at an idle
    # prompt. MicroPython raises it at any backward jump, so every loop here
    # sits inside a try; the host sends at most one per request.
    while True:
        try:
            while True:
                serve_one()
        except KeyboardInterrupt:
            pass


mount_flash(sys.argv[1], int(sys.argv[2]))
reply("hello")  # the interpreter runs: from now on Ctrl-C (SIGINT) is a KeyboardInterrupt
while True:
    try:
        serve_forever()
    except KeyboardInterrupt:
        pass
