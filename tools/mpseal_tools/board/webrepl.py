"""Our WebREPL client: MicroPython's modwebrepl protocol over a websocket.

Protocol (extmod/modwebrepl.c, webrepl_cli.py):
- The board sends "Password: " (text frame); the client answers password +
  "\\r"; the board replies "\\r\\nWebREPL connected\\r\\n>>> " or
  "\\r\\nAccess denied\\r\\n" and closes.
- Text frames are the REPL console, exactly the UART's byte stream, so the
  raw REPL (Ctrl-A, code, Ctrl-D -> "OK" out \\x04 err \\x04 ">") works on it.
- Binary frames carry file transfers. Request: struct "<2sBBQLH64s" =
  b"WA", type (1 put, 2 get, 3 version), flags 0, offset 0, size, name
  length, name (max 64 bytes). Response: b"WB" + uint16 code (0 = ok).
  put: request, WB, `size` bytes of data, WB.
  get: request, WB, then per chunk the client sends b"\\0" and the board a
  uint16 length + data; length 0 ends; then WB.
"""
import socket
import struct
import time

from mpseal_host.addresses import parse_host_port
from mpseal_tools.board.connection import CONNECT_TIMEOUT_S, BoardConnection, BoardError, board_error_from_exec

REQUEST_FORMAT = "<2sBBQLH64s"
REQUEST_SIZE = struct.calcsize(REQUEST_FORMAT)  # 82
PUT_FILE, GET_FILE, GET_VERSION = 1, 2, 3
NAME_MAX = 64
DEFAULT_PORT = 8266
CHUNK = 1024  # what webrepl_cli.py sends per frame; the board writes 512-byte pieces
PASSWORD_PROMPT = "Password: "
CONNECTED = "WebREPL connected"
DENIED = "Access denied"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
REPLY_TIMEOUT_S = 20
ENOSPC = 28


def pack_request(kind, name, size=0):
    encoded = name.encode("utf-8")
    if len(encoded) > NAME_MAX:
        raise BoardError("the WebREPL protocol carries names of at most %d bytes: %s" % (NAME_MAX, name))
    return struct.pack(REQUEST_FORMAT, b"WA", kind, 0, 0, size, len(encoded), encoded)


def parse_request(data):
    """(kind, name, size) of an 82-byte request, or ValueError."""
    sig, kind, _flags, _offset, size, name_len, name = struct.unpack(REQUEST_FORMAT, data)
    if sig != b"WA" or name_len > NAME_MAX:
        raise ValueError("not a WebREPL file request")
    return kind, name[:name_len].decode("utf-8", "replace"), size


def response(code):
    return struct.pack("<2sH", b"WB", code)


def split_host(text):
    try:
        return parse_host_port(text, DEFAULT_PORT)
    except ValueError as exc:
        raise BoardError(str(exc))


class WebReplConnection(BoardConnection):
    """A board over WebREPL: files through the binary protocol, exec through
    the raw REPL on the console channel."""

    def __init__(self, address, password):
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        host, port = split_host(address)
        self.description = "the board at %s:%d" % (host, port)
        self.console = bytearray()  # text frames not consumed yet
        self.binary = bytearray()  # binary frames not consumed yet
        try:
            # Entered by hand (closed in close()): websockets wants connect() used as a context manager.
            self._session = connect("ws://%s:%d/" % (host, port), open_timeout=CONNECT_TIMEOUT_S,
                                    compression=None, max_size=None)  # modwebrepl knows no extensions
            self.ws = self._session.__enter__()
        except ConnectionRefusedError:
            raise BoardError("%s refused the connection: is the board on the network and WebREPL started "
                             "(webrepl.start(), or \"webrepl\" in config.json)?" % self.description)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise BoardError("cannot reach WebREPL at %s: %s (check HOST and that you are on the board's "
                             "network)" % (self.description, exc))
        self._limit_sends()
        self._login(password)
        self._enter_raw_repl()

    def _limit_sends(self):
        """A send to a board that stopped reading fails after REPLY_TIMEOUT_S
        instead of blocking forever (receives have their own timeouts; the
        websockets library has none for sends, so the socket gets one)."""
        try:
            seconds = struct.pack("ll", REPLY_TIMEOUT_S, 0)  # struct timeval
            self.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, seconds)
        except (AttributeError, OSError):
            pass  # not on this platform: sends then wait as long as TCP does

    # ---- frames ----
    def _receive(self, timeout):
        from websockets.exceptions import ConnectionClosed

        try:
            message = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return False
        except ConnectionClosed:
            raise BoardError("%s closed the WebREPL connection" % self.description)
        if isinstance(message, str):
            self.console += message.encode("utf-8")
        else:
            self.binary += message
        return True

    def _wait(self, ready, timeout):
        """Receives frames until ready() is true; False when timeout passes first."""
        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                return False
        return True

    def _read_console_until(self, marker, timeout):
        if not self._wait(lambda: marker in self.console, timeout):
            return False
        del self.console[:self.console.index(marker) + len(marker)]
        return True

    def _console_until(self, marker, timeout):
        """Console bytes up to (not including) marker; BoardError on timeout."""
        if not self._wait(lambda: marker in self.console, timeout):
            raise BoardError("%s stopped answering (waited %d s)" % (self.description, timeout))
        end = self.console.index(marker)
        data = bytes(self.console[:end])
        del self.console[:end + len(marker)]
        return data

    def _read_binary(self, n, timeout=REPLY_TIMEOUT_S):
        if not self._wait(lambda: len(self.binary) >= n, timeout):
            raise BoardError("%s stopped answering a file transfer" % self.description)
        data = bytes(self.binary[:n])
        del self.binary[:n]
        return data

    def _write_console(self, data):
        self.ws.send(data.decode("utf-8"))

    # ---- session ----
    def _login(self, password):
        if not self._read_console_until(PASSWORD_PROMPT.encode(), CONNECT_TIMEOUT_S):
            raise BoardError("%s is not a WebREPL (no password prompt)" % self.description)
        self.ws.send(password + "\r")
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if CONNECTED.encode() in self.console:
                self.console.clear()
                return
            if DENIED.encode() in self.console:
                self.close()
                raise BoardError("%s refused the WebREPL password: check --password (the one set with "
                                 "webrepl_setup or config.json's webrepl.password)" % self.description)
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not self._receive(left):
                    raise BoardError("%s did not answer the WebREPL login" % self.description)
            except BoardError:
                if DENIED.encode() in self.console:
                    continue
                raise BoardError("%s closed the connection after the password: wrong password?"
                                 % self.description)

    def _enter_raw_repl(self):
        self._write_console(b"\r\x03\x03")  # interrupt a running program, as mpremote does
        self._write_console(b"\r\x01")
        if not self._read_console_until(RAW_BANNER, CONNECT_TIMEOUT_S):
            raise BoardError("%s does not enter the raw REPL" % self.description)

    def exec(self, code):
        self._write_console(code.encode("utf-8") + b"\x04")
        self._console_until(b"OK", REPLY_TIMEOUT_S)
        out = self._console_until(b"\x04", REPLY_TIMEOUT_S)
        err = self._console_until(b"\x04", REPLY_TIMEOUT_S)
        self._console_until(b">", REPLY_TIMEOUT_S)
        if err:
            raise board_error_from_exec(self.description, err.decode("utf-8", "replace"))
        return out.decode("utf-8", "replace")

    # ---- files ----
    def _file_error(self, path, code, doing):
        if code == ENOSPC:
            return BoardError("the flash of %s is full while writing %s: remove files (upload --clean) or make "
                              "the build smaller" % (self.description, path))
        return BoardError("%s: %s %s failed (WebREPL code %d)" % (self.description, doing, path, code))

    def _write_file(self, path, data, progress):
        from websockets.exceptions import ConnectionClosed

        self.ws.send(pack_request(PUT_FILE, path, len(data)))
        code = self._response()
        if code:
            raise self._file_error(path, code, "opening")
        try:
            for start in range(0, len(data), CHUNK):
                self.ws.send(data[start:start + CHUNK])
                if progress:
                    progress(min(start + CHUNK, len(data)), len(data))
            code = self._response()
        except OSError as exc:  # a send that timed out (SO_SNDTIMEO): the board stopped taking data
            raise BoardError("%s stopped taking data while %s was written (%s): is it still running? Reset it "
                             "and try again" % (self.description, path, exc))
        except (ConnectionClosed, BoardError):
            # A real modwebrepl has no error reply: a failed write ends the session.
            raise BoardError("%s dropped the connection while writing %s (%d bytes): is its flash full?"
                             % (self.description, path, len(data)))
        if code:
            raise self._file_error(path, code, "writing")

    def _response(self):
        sig, code = struct.unpack("<2sH", self._read_binary(4))
        if sig != b"WB":
            raise BoardError("%s answered a file transfer with %r, not WB" % (self.description, sig))
        return code

    def get_file(self, path):
        self.ws.send(pack_request(GET_FILE, path))
        code = self._response()
        if code:
            raise BoardError("%s cannot read %s (WebREPL code %d: missing file?)" % (self.description, path, code))
        data = bytearray()
        while True:
            self.ws.send(b"\0")
            (length,) = struct.unpack("<H", self._read_binary(2))
            if length == 0:
                break
            data += self._read_binary(length)
        code = self._response()
        if code:
            raise BoardError("%s: reading %s failed (WebREPL code %d)" % (self.description, path, code))
        return bytes(data)

    def version(self):
        self.ws.send(pack_request(GET_VERSION, ""))
        return tuple(self._read_binary(3))

    def soft_reset(self):
        # A real board restarts WebREPL on reset, dropping this session; either outcome is fine.
        self._write_console(b"\r\x02")
        self._read_console_until(b">>> ", 5)
        self._write_console(b"\x04")
        try:
            self._read_console_until(b"soft reboot", 5)
        except BoardError:
            pass

    def close(self):
        try:
            # Leave the raw REPL, as mpremote does on exit: the next user of the
            # console (serial or WebREPL) finds the friendly REPL.
            self._write_console(b"\r\x02")
        except Exception:  # noqa: BLE001 - the session may already be gone; closing goes on
            pass
        try:
            self._session.__exit__(None, None, None)
        except (OSError, socket.error):
            pass
