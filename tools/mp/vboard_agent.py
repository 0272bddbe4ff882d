# Runs INSIDE the MicroPython unix port as the "CPU" of the virtual board
# (tools/mpseal_tools/vboard.py owns the pty and speaks the REPL protocol; this
# script only executes what it is told). One process lives from one (soft)
# reset to the next, so globals persist between raw-REPL executions exactly as
# on a board, and a soft reset is simply a new process.
#
# Usage: micropython vboard_agent.py FLASH_IMAGE BLOCK_COUNT REPLY_FD
#
# Requests arrive on stdin:   b"<kind> <length>\n" + payload
#   boot  b"1"|b"0"  mount flash, run boot.py, and main.py when b"1" (friendly REPL)
#   exec  code       raw REPL: compile as a file, run, reply the traceback text
#   line  code       friendly REPL: compile as 'single' (echoes expression values)
#   put   path\0data WebREPL put: write a file, reply the errno (0 = ok)
#   get   path       WebREPL get: reply the file's bytes
# Replies go to REPLY_FD (not stdout, which is the board's console):
#   b"<status> <length>\n" + payload   status: hello (once, at start) | done | ok | err
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


def reply(status, payload=b""):
    message = b"%s %d\n" % (status.encode(), len(payload)) + payload
    while True:
        try:  # a late Ctrl-C must not swallow the reply the host waits for
            ctl.write(message)
            return
        except KeyboardInterrupt:
            pass


def read_exactly(n):
    data = b""
    while len(data) < n:
        chunk = requests.read(n - len(data))
        if not chunk:
            raise SystemExit(0)  # the host went away: power off
        data += chunk
    return data


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
    elif kind == b"put":
        nul = payload.find(b"\0")
        try:
            with open(payload[:nul].decode(), "wb") as f:
                f.write(payload[nul + 1:])
            reply("ok", b"0")
        except OSError as exc:
            reply("err", str(exc.errno).encode())
    elif kind == b"get":
        try:
            with open(payload.decode(), "rb") as f:
                reply("ok", f.read())
        except OSError as exc:
            reply("err", str(exc.errno).encode())
    else:
        reply("err", b"unknown request")


def main():
    mount_flash(sys.argv[1], int(sys.argv[2]))
    reply("hello")  # the interpreter runs: from now on Ctrl-C (SIGINT) is a KeyboardInterrupt
    while True:
        try:
            header = requests.readline()
            if not header:
                return
            kind, length = header.split()
            payload = read_exactly(int(length))
        except KeyboardInterrupt:
            continue  # Ctrl-C with nothing running: ignored, as at an idle prompt
        try:
            handle(kind, payload)
        except Exception as exc:  # noqa: BLE001 - e.g. MemoryError reading a big file: answer, keep running
            reply("err", str(getattr(exc, "errno", 5) or 5).encode())


main()
