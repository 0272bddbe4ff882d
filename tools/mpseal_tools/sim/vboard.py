"""A virtual ESP8266 board: the MicroPython unix port behind a pseudo-terminal.

mpremote, ampy and `mpseal deploy` open the pty path as they would open
/dev/ttyUSB0. This process owns the pty master and speaks MicroPython's REPL
protocol on it (friendly REPL, raw REPL with Ctrl-A/B/C/D, raw-paste mode);
a long-lived `micropython` child running vboard_agent.py executes the code.
A soft reset starts a new child, so nothing survives it but the flash.

The flash is a littlefs2 image file (`<flash dir>/flash.img`) with the size of
the board's filesystem partition: writing past it fails with ENOSPC as on the
chip. `read_flash_files()` reads the image from the host for checks.

With `webrepl=(host, port)` it also listens for WebREPL clients (modwebrepl's
protocol: websocket, "Password: ", text frames = the REPL, binary frames =
"WA" file transfer requests). See docs/deploy.md, "Virtual board".

Does NOT model: machine/network hardware (pins, Wi-Fi, RTC, deep sleep:
the firmware's hw_unix seam stands in), the UART's speed (the pty is as
fast as the host; docs/deploy.md gives wire-time estimates for 115200 baud),
the ESP8266's CPU speed and exact heap (128k of 64-bit objects for ~36 KB on
the chip), flash erase timing and wear, user code reading sys.stdin,
mpremote `mount`, the hard-reset line (DTR/RTS: esptool and `mpseal flash`
need a real chip), and a boot that takes time (the REPL answers at once).
"""
import asyncio
import os
import signal
import struct
import subprocess
import sys
import tty

from mpseal_tools.paths import micropython_program

AGENT = micropython_program("vboard_agent.py")
BLOCK_SIZE = 4096
DEFAULT_FS_BYTES = 4 * 1024 * 1024 - 0x100000 - 20480  # 4 MB chip: 1 MB firmware, 20 KB SDK params at the end
# The ESP8266 leaves about 36 KB to Python; objects on the 64-bit unix port are about
# twice as big, and the agent and littlefs buffers live in the same heap.
HEAP = "128k"
RAW_PASTE_WINDOW = 256
OUTPUT_LIMIT = 1 << 20  # bytes kept for a slow reader; beyond it output is dropped like a UART's
BANNER = b'MicroPython v1.29 (unix port) with ESP8266 (mpseal vboard)\r\nType "help()" for more information.\r\n'
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY, RAW, RAW_PASTE = "friendly", "raw", "raw-paste"


def micropython_executable():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else "micropython"


def fs_bytes_for_flash(flash_bytes):
    """Size of MicroPython's filesystem on an ESP8266 with this much flash."""
    if flash_bytes >= 2 << 20:
        return flash_bytes - 0x100000 - 20480
    return 396 * 1024  # FLASH_1M image: the rest after the 600 KB firmware


def ensure_flash_image(flash_dir, fs_bytes=DEFAULT_FS_BYTES):
    """Returns (image path, block count); an existing image keeps its size."""
    os.makedirs(flash_dir, exist_ok=True)
    path = os.path.join(flash_dir, "flash.img")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(fs_bytes // BLOCK_SIZE * BLOCK_SIZE)  # sparse; littlefs needs no erased 0xFF
    return path, os.path.getsize(path) // BLOCK_SIZE


def read_flash_files(flash_dir):
    """{"/path": bytes} of every file on the virtual board's flash, read with
    littlefs-python (independent of the board process: a second opinion)."""
    from littlefs import LittleFS

    path = os.path.join(flash_dir, "flash.img")
    with open(path, "rb") as f:
        image = f.read()
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=len(image) // BLOCK_SIZE, mount=False)
    fs.context.buffer = bytearray(image)
    fs.mount()
    files = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            full = root.rstrip("/") + "/" + name
            with fs.open(full, "rb") as f:
                files[full] = f.read()
    return files


class Cpu:
    """The micropython child: one request at a time, replies via callbacks."""

    def __init__(self, loop, image, blocks, on_output, on_crash):
        self.loop, self.image, self.blocks = loop, image, blocks
        self.on_output, self.on_crash = on_output, on_crash
        self.proc = None
        self.queue = []  # (kind, payload, callback)
        self.current = None
        self.reply_buf = b""
        self.seq = 0  # numbers requests; a reply names the one it answers
        self.running_seq = None  # the request whose program has started ("run <seq>")
        self.interrupt_wanted = None  # Ctrl-C for a request whose program has not started yet
        self.interrupted_seq = None

    def start(self):
        reply_r, reply_w = os.pipe()
        self.proc = subprocess.Popen(
            [micropython_executable(), "-X", "heapsize=" + HEAP, AGENT, self.image, str(self.blocks), str(reply_w)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(reply_w,),
            start_new_session=True)  # our terminal's Ctrl-C must not reach the board's CPU
        os.close(reply_w)
        self.reply_fd = reply_r
        self.reply_buf = b""
        for fd in (self.proc.stdout.fileno(), self.proc.stderr.fileno(), reply_r):
            os.set_blocking(fd, False)
        self.loop.add_reader(self.proc.stdout.fileno(), self._read_stdout, self.proc)
        self.loop.add_reader(self.proc.stderr.fileno(), self._read_stderr, self.proc)
        self.loop.add_reader(reply_r, self._read_replies, self.proc)

    def stop(self):
        """Power off: pending requests fail with EIO, as a reset board would answer nothing."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for fd in (proc.stdout.fileno(), proc.stderr.fileno(), self.reply_fd):
            self.loop.remove_reader(fd)
        proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        os.close(self.reply_fd)
        pending, self.queue = ([self.current] if self.current else []) + self.queue, []
        self.current = None
        for _kind, _payload, callback in pending:
            callback("err", b"5")

    def request(self, kind, payload, callback):
        self.queue.append((kind, payload, callback))
        self._next()

    @property
    def running_kind(self):
        return self.current[0] if self.current else None

    def interrupt(self):
        """Ctrl-C: a KeyboardInterrupt in the running program. Sent only once
        its program has started ("run <seq>": earlier, SIGINT could land in
        the agent while it reads the request) and once per program (mpremote
        sends Ctrl-C twice; a second one could only land after the program)."""
        if not self.proc or not self.current or self.current[0] not in ("exec", "line", "boot"):
            return
        if self.interrupted_seq == self.seq:
            return
        if self.running_seq != self.seq:
            self.interrupt_wanted = self.seq  # sent when the program starts
            return
        self.interrupted_seq = self.seq
        self.proc.send_signal(signal.SIGINT)

    def _next(self):
        if self.current or not self.queue or not self.proc:
            return
        self.current = self.queue.pop(0)
        kind, payload, _ = self.current
        self.seq += 1
        try:
            # The NUL may be eaten by a late Ctrl-C (see vboard_agent.py); the header survives.
            self.proc.stdin.write(b"\0%s %d %d\n" % (kind.encode(), self.seq, len(payload)) + payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the crash is reported by _read_replies seeing EOF

    def _drain_stdout(self, proc):
        while True:
            try:
                data = os.read(proc.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                return
            # A board's console turns "\n" into "\r\n" (mp_hal_stdout_tx_strn_cooked).
            self.on_output(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    def _read_stdout(self, proc):
        if proc is self.proc:
            self._drain_stdout(proc)

    def _read_stderr(self, proc):
        try:
            data = os.read(proc.stderr.fileno(), 65536)
        except BlockingIOError:
            return
        if data:  # the interpreter itself failed (fatal error): show it on the console
            self.on_output(data.replace(b"\n", b"\r\n"))
        else:
            self.loop.remove_reader(proc.stderr.fileno())

    def _read_replies(self, proc):
        if proc is not self.proc:
            return
        try:
            data = os.read(self.reply_fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._drain_stdout(proc)
            self.loop.remove_reader(self.reply_fd)
            self.on_crash(proc.wait())
            return
        self.reply_buf += data
        while b"\n" in self.reply_buf:
            header, rest = self.reply_buf.split(b"\n", 1)
            status, seq, length = header.split()
            length = int(length)
            if len(rest) < length:
                return
            payload, self.reply_buf = rest[:length], rest[length:]
            self._drain_stdout(proc)  # output written before the reply goes first
            if status == b"hello":
                continue
            if status == b"run":
                if int(seq) == self.seq:
                    self.running_seq = self.seq
                    if self.interrupt_wanted == self.seq:
                        self.interrupt()
                continue
            if self.current is None or int(seq) != self.seq:
                continue  # a reply repeated after a late Ctrl-C (see vboard_agent.reply)
            _kind, _payload, callback = self.current
            self.current = None
            callback(status.decode(), payload)
            self._next()


class VirtualBoard:
    """REPL state machine between terminals (pty, WebREPL sessions) and the Cpu."""

    def __init__(self, flash_dir, fs_bytes=DEFAULT_FS_BYTES, webrepl=None, password=None, log=None):
        self.flash_dir = flash_dir
        self.image, self.blocks = ensure_flash_image(flash_dir, fs_bytes)
        self.webrepl_addr, self.password = webrepl, password
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.terminals = []  # callables taking output bytes
        self.mode = FRIENDLY
        self.line = b""  # friendly REPL: the line being typed
        self.block = []  # friendly REPL: lines of a compound statement
        self.raw = bytearray()
        self.pending = bytearray()  # input received while the CPU is busy
        self.console_busy = False
        self.escape = 0
        self.paste_count = 0
        self.out_queue = bytearray()
        self.wire_in = self.wire_out = 0  # bytes over the pty, reported at exit (deploy cost)

    # ---- terminals ------------------------------------------------------
    def output(self, data):
        for terminal in list(self.terminals):
            terminal(data)

    def _pty_write(self, data):
        self.wire_out += len(data)
        if len(self.out_queue) + len(data) <= OUTPUT_LIMIT:
            self.out_queue += data
        self._flush_pty()

    def _flush_pty(self):
        while self.out_queue:
            try:
                n = os.write(self.master, self.out_queue)
            except BlockingIOError:
                self.loop.add_writer(self.master, self._flush_pty)
                return
            except OSError:
                self.out_queue.clear()
                return
            del self.out_queue[:n]
        self.loop.remove_writer(self.master)

    def _pty_readable(self):
        try:
            data = os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return
        self.wire_in += len(data)
        self.feed(data)

    # ---- lifecycle ------------------------------------------------------
    async def start(self):
        self.loop = asyncio.get_running_loop()
        self.master, self.slave = os.openpty()
        # Raw line discipline: no echo, no CR/LF rewriting; the REPL does its own.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.pty_path = os.ttyname(self.slave)
        self.loop.add_reader(self.master, self._pty_readable)
        self.terminals.append(self._pty_write)
        self.cpu = Cpu(self.loop, self.image, self.blocks, self.output, self._crashed)
        self.webrepl_server = None
        if self.webrepl_addr:
            from mpseal_tools.sim.webrepl_server import serve

            self.webrepl_server = await serve(self, *self.webrepl_addr)
        self._power_on()

    async def close(self):
        self.log("vboard: serial bytes received %d, sent %d" % (self.wire_in, self.wire_out))
        self.cpu.stop()
        if self.webrepl_server:
            for session in list(self.webrepl_sessions):
                session.writer.close()  # else wait_closed() waits for the client to leave
            self.webrepl_server.close()
            await self.webrepl_server.wait_closed()
        self.loop.remove_reader(self.master)
        self.loop.remove_writer(self.master)
        os.close(self.master)
        os.close(self.slave)

    def _power_on(self, announce=b""):
        self.cpu.stop()
        self.output(announce)
        self.raw.clear()
        self.line, self.block = b"", []
        self.cpu.start()
        self._console_request("boot", b"1" if self.mode == FRIENDLY else b"0", self._booted)

    def _booted(self, status, payload):
        self.output(BANNER + b">>> " if self.mode == FRIENDLY else RAW_BANNER)

    def _crashed(self, code):
        self.log("vboard: MicroPython exited with code %s; resetting the board" % code)
        self.console_busy = False
        # A crash is a hard reset on a board (watchdog): it comes up in the
        # friendly REPL and runs main.py, whatever mode the REPL was in.
        self.mode = FRIENDLY
        self._power_on(b"\r\nvboard: MicroPython exited (code %s), soft reboot\r\n" % str(code).encode())

    def soft_reset(self):
        self._power_on(b"MPY: soft reboot\r\n")

    # ---- console input --------------------------------------------------
    def _console_request(self, kind, payload, done):
        self.console_busy = True

        def finished(status, reply):
            self.console_busy = False
            done(status, reply)
            self._process()

        self.cpu.request(kind, payload, finished)

    def feed(self, data):
        if self.console_busy and b"\x03" in data and self.mode != RAW_PASTE:
            # Ctrl-C interrupts the running program; bytes before it stay queued, as in the UART's ring buffer.
            data = data.replace(b"\x03", b"")
            self.cpu.interrupt()
        self.pending += data
        self._process()

    def _process(self):
        while self.pending and not self.console_busy:
            c = self.pending[0]
            del self.pending[0]
            if self.mode == FRIENDLY:
                self._friendly(c)
            elif self.mode == RAW:
                self._raw(c)
            else:
                self._raw_paste(c)

    def _friendly(self, c):
        if self.escape:  # swallow cursor-key escape sequences (ESC [ X)
            self.escape -= 1
        elif c == 0x1B:
            self.escape = 2
        elif c == 0x01:  # Ctrl-A: raw REPL
            self.output(b"\r\n" + RAW_BANNER)
            self.mode, self.line, self.block = RAW, b"", []
            self.raw.clear()
        elif c == 0x02:  # Ctrl-B: banner again
            self.output(b"\r\n" + BANNER + b">>> ")
        elif c == 0x03:
            self.line, self.block = b"", []
            self.output(b"\r\n>>> ")
        elif c == 0x04:
            if not self.line and not self.block:
                self.output(b"\r\n")
                self.soft_reset()
        elif c in (0x08, 0x7F):
            if self.line:
                self.line = self.line[:-1]
                self.output(b"\x08 \x08")
        elif c == 0x0D:
            self.output(b"\r\n")
            self._friendly_enter()
        elif c >= 0x20 or c == 0x09:
            self.line += bytes((c,))
            self.output(bytes((c,)))

    def _friendly_enter(self):
        line, self.line = self.line, b""
        if self.block:  # inside a compound statement: an empty line ends it
            if line.strip():
                self.block.append(line)
                self.output(b"... ")
                return
            source, self.block = b"\n".join(self.block) + b"\n", []
        elif line.rstrip().endswith(b":"):
            self.block = [line]
            self.output(b"... ")
            return
        elif not line.strip():
            self.output(b">>> ")
            return
        else:
            source = line
        self._console_request("line", source, lambda status, reply: self.output(b">>> "))

    def _raw(self, c):
        if c == 0x01:
            if bytes(self.raw) == b"\x05A":
                self.raw.clear()
                self.mode, self.paste_count = RAW_PASTE, 0
                self.output(b"R\x01" + struct.pack("<H", RAW_PASTE_WINDOW) + b"\x01")
                return
            if len(self.raw) == 2 and self.raw[0] == 0x05:
                self.raw.clear()
                self.output(b"R\x00")  # a raw-paste flavour we do not speak
                return
            self.raw.clear()
            self.output(RAW_BANNER)
        elif c == 0x02:
            self.raw.clear()
            self.mode = FRIENDLY
            self.output(b"\r\n" + BANNER + b">>> ")
        elif c == 0x03:
            self.raw.clear()
        elif c == 0x04:
            self.output(b"OK")
            if not self.raw:
                self.output(b"\r\n")
                self.soft_reset()
                return
            code, self.raw = bytes(self.raw), bytearray()
            self._console_request("exec", code, self._exec_done)
        else:
            self.raw.append(c)

    def _raw_paste(self, c):
        if c == 0x04:
            self.output(b"\x04")  # acknowledges the end of the code
            self.mode = RAW
            code, self.raw = bytes(self.raw), bytearray()
            self._console_request("exec", code, self._exec_done)
            return
        self.raw.append(c)
        self.paste_count += 1
        if self.paste_count % RAW_PASTE_WINDOW == 0:
            self.output(b"\x01")  # flow control: another window may be sent

    def _exec_done(self, status, error):
        if status != "done":
            error = b"OSError: [Errno 5] EIO\n"
        self.output(b"\x04" + error.replace(b"\n", b"\r\n") + b"\x04>")

    # ---- WebREPL file transfer (called by vboard_webrepl) ---------------
    def file_request(self, kind, payload):
        """Put/get on the board's flash between REPL commands; returns a
        future of (status, payload)."""
        future = self.loop.create_future()

        def done(status, reply):
            if not future.done():
                future.set_result((status, reply))

        self.cpu.request(kind, payload, done)
        return future


async def run(flash_dir, fs_bytes=DEFAULT_FS_BYTES, webrepl=None, password=None, ready=None):
    """Runs a virtual board until cancelled; `ready(board)` is called once it listens."""
    board = VirtualBoard(flash_dir, fs_bytes, webrepl, password)
    await board.start()
    try:
        if ready:
            ready(board)
        await asyncio.Event().wait()
    finally:
        await board.close()
