# Runs INSIDE the MicroPython unix port as the "CPU" of the virtual board
# (tools/mpseal_tools/vboard.py owns the pty and speaks the REPL protocol; this
# script only executes what it is told). One process lives from one (soft)
# reset to the next, so globals persist between raw-REPL executions exactly as
# on a board, and a soft reset is simply a new process.
#
# Usage: micropython vboard_agent.py FLASH_IMAGE BLOCK_COUNT REPLY_FD
#
# Requests arrive on stdin:   b"\0<kind> <seq> <length>\n" + payload
# (the leading NUL may be lost to a Ctrl-C, see below)
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
#   b"run <seq> 0\n" just before the user's code of boot/exec/line starts.
# err carries the errno. The host ignores a reply whose seq is not the request
# it waits for.
#
# Ctrl-C is SIGINT, which MicroPython raises as KeyboardInterrupt at the next
# backward jump, wherever that is. The host sends it only after "run <seq>"
# and at most once per request, so it lands in the user's code or, when that
# just ended, in this agent's code before the next request's header has been
# read (it is handled when the read of those bytes returns). The unix port
# raises it asynchronously, from the signal handler: when the signal and the
# next request's first byte reach a read at the same moment, Linux returns the
# byte and the handler then throws it away -- so every request starts with a
# NUL that may be lost (one signal, at most one byte). Every step of
# the loop below is therefore restartable: bytes read go straight into a
# global buffer, the request being served and its reply live in globals, the
# reply is written in pieces no bigger than PIPE_BUF (atomic) with the offset
# kept, and a request whose program already started is never run twice.
# Program output goes straight to stdout, unbuffered, like a UART.
import io
import os
import sys

BLOCK_SIZE = 4096  # the ESP8266's flash sector; MicroPython's FlashBdev uses it too

# Opened before the flash replaces "/", while /dev is still reachable.
ctl = open("/dev/fd/" + sys.argv[3], "wb")
# The request pipe as a plain file: its reads retry EINTR without consuming a byte
# (sys.stdin.buffer on the unix port can take a byte and then raise the
# pending KeyboardInterrupt, losing it).
requests = open("/dev/fd/0", "rb")


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


PIPE_BUF = 4096  # Linux: a pipe write up to this size is all or nothing
inbuf = bytearray()  # request bytes read and not consumed yet
S = {"req": None, "started": False, "result": None, "msg": None, "sent": 0}


def write_all(message):
    """Writes message to the host whatever Ctrl-C does; resumes where it stopped."""
    while S["sent"] < len(message):
        piece = message[S["sent"]:S["sent"] + PIPE_BUF]
        ctl.write(piece); S["sent"] += len(piece)  # noqa: E702 - no jump between them: no KeyboardInterrupt


def reply(status, payload=b""):
    # Outside the request loop: only "hello", before any Ctrl-C can come.
    S["sent"] = 0
    write_all(b"%s 0 %d\n" % (status.encode(), len(payload)) + payload)
    S["sent"] = 0


def announce_run():
    # Short (below PIPE_BUF) and sent before any SIGINT for this request: one write.
    ctl.write(b"run %s 0\n" % S["req"][1])


def take_request():
    while b"\n" not in inbuf:
        before = len(inbuf)
        inbuf.extend(requests.read(1))
        if len(inbuf) == before:
            raise SystemExit(0)  # the host went away: power off
    end = inbuf.index(b"\n")
    kind, seq, length = bytes(inbuf[:end]).lstrip(b"\0").split()
    total = end + 1 + int(length)
    while len(inbuf) < total:  # no Ctrl-C comes now: the payload is read in one go
        before = len(inbuf)
        inbuf.extend(requests.read(total - len(inbuf)))
        if len(inbuf) == before:
            raise SystemExit(0)
    S["req"] = (kind, seq, bytes(inbuf[end + 1:total])); inbuf[0:total] = b""  # noqa: E702 - together


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
    """(status, payload) of one request."""
    if kind == b"boot":
        announce_run()
        run_file_if_exists("boot.py")
        if payload == b"1":
            run_file_if_exists("main.py")
        return "done", b""
    if kind == b"exec":
        announce_run()
        return "done", run_source(payload.decode(), "exec").encode()
    if kind == b"line":
        announce_run()
        error = run_source(payload.decode(), "single")
        if error:
            sys.stdout.write(error)
        return "done", b""
    if kind in TRANSFERS:
        try:
            return "ok", TRANSFERS[kind](payload) or b""
        except OSError as exc:
            return "err", str(exc.errno or EIO).encode()
    return "err", b"22"  # EINVAL


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


INTERRUPTED = {b"exec": b"KeyboardInterrupt: \n", b"line": b"", b"boot": b""}


def serve_one():
    if S["req"] is None:
        take_request()
    kind, seq, payload = S["req"]
    if S["result"] is None:
        if S["started"]:
            # Ctrl-C came after the program had run, before its answer was made:
            # answer, never run it twice.
            S["result"] = ("done", INTERRUPTED.get(kind, b""))
        else:
            S["started"] = True
            try:
                S["result"] = handle(kind, payload)
            except Exception as exc:  # noqa: BLE001 - e.g. MemoryError: answer, keep running
                S["result"] = ("err", str(getattr(exc, "errno", EIO) or EIO).encode())
    if S["msg"] is None:
        status, data = S["result"]
        S["msg"] = b"%s %s %d\n" % (status.encode(), seq, len(data)) + data
    write_all(S["msg"])
    S["req"] = None; S["started"] = False; S["result"] = None; S["msg"] = None; S["sent"] = 0  # noqa: E702


def serve_forever():
    # Every loop sits inside a try: a KeyboardInterrupt raised at any jump
    # restarts serve_one, which resumes from the globals (see the top).
    while True:
        try:
            while True:
                serve_one()
        except KeyboardInterrupt:
            pass


mount_flash(sys.argv[1], int(sys.argv[2]))
reply("hello")  # the interpreter runs
while True:
    try:
        serve_forever()
    except KeyboardInterrupt:
        pass
