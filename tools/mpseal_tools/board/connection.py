"""One small interface to a board's files and REPL, over several transports.

    from mpseal_tools.board.transports import open_board
    with open_board(port="/dev/ttyUSB0", tool="mpremote") as board:   # or tool="ampy"
    with open_board(host="192.168.4.1", password="...") as board:     # WebREPL (webrepl.py)
        board.put_file("/config.json", data); board.get_file(path); board.ls("/")
        board.exec(code); board.hashes(paths); board.remove(path); board.mkdir(path)
        board.free_bytes(); board.soft_reset()

Serial connections drive the real tools' Python APIs (mpremote's
SerialTransport, ampy's Pyboard/Files); only the few scripts below, which
run on the board, are ours. See docs/deploy.md.
"""
import ast
import errno
import os
import time

from mpseal_host.errors import MpsealError

# -- code that runs on the board (MicroPython); one place, shared by every transport --
# Line by line and in batches: after an interrupted main.py the heap may be nearly full.
HASHES_SCRIPT = """\
import hashlib, binascii, gc
gc.collect()
def _h(p, b=bytearray(256)):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    mv = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(mv[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
for _p in %r:
    print(repr((_p, _h(_p))))
"""
HASH_BATCH = 10  # paths per round trip: keeps the script small for a small heap
LS_SCRIPT = """\
import os
def _ls(d, out, deep):
    for e in os.ilistdir(d):
        p = (d.rstrip('/') + '/' + e[0])
        isdir = e[1] & 0x4000 != 0
        out.append((p, isdir, 0 if isdir else os.stat(p)[6]))
        if isdir and deep:
            _ls(p, out, deep)
    return out
print(repr(_ls(%r, [], %r)))
"""
MAKEDIRS_SCRIPT = """\
import os
_p = ''
for _part in %r.strip('/').split('/'):
    _p += '/' + _part
    try:
        os.mkdir(_p)
    except OSError as e:
        if e.errno != 17:
            raise
"""
REMOVE_SCRIPT = "import os\nos.remove(%r)\n"
RMDIR_SCRIPT = "import os\nos.rmdir(%r)\n"
FREE_SCRIPT = "import os\n_s = os.statvfs('/')\nprint(_s[0] * _s[4])\n"

SOFT_REBOOT = b"soft reboot"
CONNECT_TIMEOUT_S = 10
# Every wait on a board has a deadline: a board that says nothing for this
# long while a reply is due has stopped answering (hung program, brown-out,
# cable). mpremote's and ampy's own timeouts count only while bytes are polled;
# on a pty (and in ampy always) their first read blocks with no timeout at
# all, so reads go through DeadlineSerial.
SILENCE_S = 10.0
POLL_S = 0.1


class BoardError(MpsealError):
    """A board operation failed; the message says what is wrong."""


class Entry(tuple):
    """(path, is_dir, size) of a file or folder on the board."""
    __slots__ = ()

    def __new__(cls, path, is_dir, size):
        return tuple.__new__(cls, (path, is_dir, size))

    path = property(lambda self: self[0])
    is_dir = property(lambda self: self[1])
    size = property(lambda self: self[2])


class DeadlineSerial:
    """A pyserial port whose read(n) returns what came within SILENCE_S
    (possibly b""), instead of blocking forever: mpremote and ampy then hit
    their own timeouts and report them. Everything else is the port's."""

    def __init__(self, port, silence_s=SILENCE_S):
        self._port = port
        self.silence_s = silence_s
        port.timeout = POLL_S

    def read(self, size=1, timeout=None):
        deadline = time.monotonic() + (self.silence_s if timeout is None else timeout)
        data = b""
        while len(data) < size:
            data += self._port.read(size - len(data))
            if len(data) < size and time.monotonic() >= deadline:
                break
        return data

    def __getattr__(self, name):
        return getattr(self._port, name)


def read_until_deadline(port, marker, timeout):
    """Bytes up to and including marker, or what came before timeout passed."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(marker):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        data += port.read(1, timeout=min(left, POLL_S * 5))
    return data


def _flash_full(error_text):
    return "ENOSPC" in error_text or "Errno 28" in error_text or "OSError: 28" in error_text


class BoardConnection:
    """Operations in terms of exec() and _write_file(); transports supply those."""

    description = "board"

    # ---- what a transport implements ----
    def exec(self, code):
        """Runs code in the raw REPL; returns its stdout (str). Raises BoardError
        with the board's traceback on an exception."""
        raise NotImplementedError

    def _write_file(self, path, data, progress):
        raise NotImplementedError

    def get_file(self, path):
        raise NotImplementedError

    def _write_console(self, data):
        raise NotImplementedError

    def _read_console_until(self, marker, timeout):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    # ---- shared operations ----
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _literal(self, text):
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise BoardError("%s answered something unexpected: %r" % (self.description, text[:200]))

    def eval_repr(self, code):
        return self._literal(self.exec(code))

    def hashes(self, paths):
        """{path: sha256 hex or None when the file is missing}, one round trip."""
        paths, result = list(paths), {}
        for start in range(0, len(paths), HASH_BATCH):
            out = self.exec(HASHES_SCRIPT % (paths[start:start + HASH_BATCH],))
            for line in out.splitlines():
                if line.strip():
                    path, digest = self._literal(line)
                    result[path] = digest
        return result

    def ls(self, path="/", recursive=False):
        try:
            return [Entry(*e) for e in self.eval_repr(LS_SCRIPT % (path, recursive))]
        except BoardError as exc:
            if "ENOENT" in str(exc) or "Errno 2" in str(exc):
                raise BoardError("%s has no folder %s" % (self.description, path))
            raise

    def mkdir(self, path):
        if path.strip("/"):
            self.exec(MAKEDIRS_SCRIPT % path)

    def remove(self, path):
        self.exec(REMOVE_SCRIPT % path)

    def rmdir(self, path):
        self.exec(RMDIR_SCRIPT % path)

    def free_bytes(self):
        return int(self.exec(FREE_SCRIPT).strip())

    def put_file(self, path, data, progress=None, make_parents=True):
        parent = path.rsplit("/", 1)[0]
        if parent and make_parents:
            self.mkdir(parent)
        try:
            self._write_file(path, bytes(data), progress)
        except BoardError as exc:
            if _flash_full(str(exc)):
                raise BoardError("the flash of %s is full while writing %s (%d bytes): remove files "
                                 "(deploy --clean removes files not in the build) or make the build smaller"
                                 % (self.description, path, len(data)))
            raise

    def soft_reset(self):
        """Leaves the raw REPL and presses Ctrl-D in the friendly REPL, so boot.py
        and main.py run (a soft reset inside the raw REPL would skip main.py)."""
        self._write_console(b"\r\x02")
        self._read_console_until(b">>> ", 5)
        self._write_console(b"\x04")
        if not self._read_console_until(SOFT_REBOOT, 10):
            raise BoardError("%s did not confirm the soft reset; press its reset button" % self.description)


def board_error_from_exec(description, error_text):
    last = error_text.strip().splitlines()[-1] if error_text.strip() else "error"
    return BoardError("%s: %s\n%s" % (description, last, error_text.strip()))


class MpremoteConnection(BoardConnection):
    """USB serial through mpremote's SerialTransport (the real mpremote)."""

    def __init__(self, port, baudrate=115200):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.description = "the board on %s" % port
        self._TransportError = TransportError
        try:
            self.transport = SerialTransport(port, baudrate=baudrate)
        except TransportError as exc:
            raise BoardError("cannot open %s: %s (is another program such as a serial monitor using it? "
                             "Is it the right port?)" % (port, exc))
        self.transport.serial = DeadlineSerial(self.transport.serial)
        try:
            self.transport.enter_raw_repl(soft_reset=True, timeout_overall=CONNECT_TIMEOUT_S)
        except TransportError as exc:
            self.transport.close()
            raise BoardError("%s does not answer with MicroPython's raw REPL (%s): is MicroPython flashed "
                             "(make flash) and the baud rate 115200?" % (self.description, exc))

    def exec(self, code):
        from mpremote.transport import TransportExecError

        try:
            return self.transport.exec(code).decode("utf-8", "replace")
        except TransportExecError as exc:
            raise board_error_from_exec(self.description, exc.error_output)
        except self._TransportError as exc:
            raise self._lost(exc)

    def _lost(self, exc):
        return BoardError("lost contact with %s: %s (it said nothing for %.0f s; press its reset button, "
                          "check the cable)" % (self.description, exc, SILENCE_S))

    def _write_file(self, path, data, progress):
        from mpremote.transport import TransportExecError

        try:
            self.transport.fs_writefile(path, data, progress_callback=progress)
        except TransportExecError as exc:
            raise board_error_from_exec(self.description, exc.error_output)
        except self._TransportError as exc:
            raise self._lost(exc)
        except OSError as exc:  # mpremote turns board errnos into OSError
            raise BoardError("%s: writing %s failed: %s" % (self.description, path,
                                                            errno.errorcode.get(exc.errno, exc)))

    def get_file(self, path):
        try:
            return bytes(self.transport.fs_readfile(path))
        except self._TransportError as exc:
            raise self._lost(exc)
        except OSError as exc:
            raise BoardError("%s: cannot read %s: %s" % (self.description, path, exc.strerror or exc))

    def _write_console(self, data):
        self.transport.serial.write(data)

    def _read_console_until(self, marker, timeout):
        return read_until_deadline(self.transport.serial, marker, timeout).endswith(marker)

    def soft_reset(self):
        super().soft_reset()
        self.transport.in_raw_repl = False

    def close(self):
        try:
            self.transport.close()
        except OSError:
            pass


class AmpyConnection(BoardConnection):
    """USB serial through adafruit-ampy's Pyboard and Files (the real ampy).
    ampy soft-resets the board around every file operation, as its CLI does."""

    def __init__(self, port, baudrate=115200):
        from ampy.files import Files
        from ampy.pyboard import Pyboard, PyboardError

        self.description = "the board on %s" % port
        self._PyboardError = PyboardError
        try:
            self.pyboard = Pyboard(port, baudrate=baudrate)
        except PyboardError as exc:
            raise BoardError("cannot open %s: %s (is another program using it? Is it the right port?)" % (port, exc))
        self.pyboard.serial = DeadlineSerial(self.pyboard.serial)
        self.files = Files(self.pyboard)
        try:
            self.pyboard.enter_raw_repl()
        except PyboardError as exc:
            self.pyboard.close()
            raise BoardError("%s does not answer with MicroPython's raw REPL (%s): is MicroPython flashed?"
                             % (self.description, exc))
        self._raw = True

    @staticmethod
    def _error_text(exc):
        """ampy's PyboardError carries ("exception", stdout, stderr) for board tracebacks."""
        return exc.args[2].decode("utf-8", "replace") if len(exc.args) > 2 else str(exc)

    def _ensure_raw(self):
        if not self._raw:
            self.pyboard.enter_raw_repl()
            self._raw = True

    def exec(self, code):
        try:
            self._ensure_raw()
            return self.pyboard.exec_(code).decode("utf-8", "replace")
        except self._PyboardError as exc:
            if len(exc.args) < 3:  # not the board's traceback: ampy gave up waiting (DeadlineSerial)
                raise BoardError("lost contact with %s: %s (it said nothing for %.0f s; press its reset button, "
                                 "check the cable)" % (self.description, exc, SILENCE_S))
            raise board_error_from_exec(self.description, self._error_text(exc))

    def _write_file(self, path, data, progress):
        self._raw = False  # Files.put enters and leaves the raw REPL itself
        try:
            self.files.put(path, data)
        except self._PyboardError as exc:
            raise board_error_from_exec(self.description, self._error_text(exc))
        if progress:
            progress(len(data), len(data))

    def get_file(self, path):
        self._raw = False
        try:
            return bytes(self.files.get(path))
        except RuntimeError as exc:  # ampy's "No such file"
            raise BoardError("%s: %s" % (self.description, exc))

    def _write_console(self, data):
        self._ensure_raw()
        self.pyboard.serial.write(data)

    def _read_console_until(self, marker, timeout):
        return read_until_deadline(self.pyboard.serial, marker, timeout).endswith(marker)

    def soft_reset(self):
        super().soft_reset()
        self._raw = False

    def close(self):
        try:
            self.pyboard.close()
        except OSError:
            pass
