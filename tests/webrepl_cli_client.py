"""A WebREPL client that puts the same bytes on the wire as MicroPython's
official `webrepl_cli.py` (github.com/micropython/webrepl, commit 1e09d9a),
written from its behaviour -- the file itself is not vendored, and CI cannot
fetch it at test time:

- plain TCP; handshake `GET / HTTP/1.1`, `Host: echo.websocket.org`,
  `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Key: foo`, no
  Sec-WebSocket-Version; the answer's header lines are skipped unchecked;
- frames UNMASKED, header and payload in two send() calls, 7- or 16-bit
  lengths; reading skips text frames unless text is wanted;
- login: read console bytes until ": ", send password + "\\r" in a BINARY frame;
- version request (`WA` type 3) answered by 3 bytes;
- put: the 82-byte `<2sBBQLH64s` record sent as two frames (10 + 72 bytes),
  `WB` code, the file in 1024-byte frames, `WB` code;
- get: record, `WB` code, then b"\\0" and a uint16-length chunk until length 0,
  `WB` code.
Failures raise ProtocolFailure where the official client dies on an assert.
"""
import socket
import struct

REQUEST = "<2sBBQLH64s"
PUT_FILE, GET_FILE, GET_VERSION = 1, 2, 3
FRAME_TEXT, FRAME_BINARY = 0x81, 0x82


class ProtocolFailure(Exception):
    """Where webrepl_cli.py would stop with an AssertionError."""


class OfficialStyleClient:
    def __init__(self, host, port, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # Not a protocol difference: without it each get chunk (2 small sends,
        # then a wait for the answer) waits ~40 ms for a delayed ACK, as the
        # official client does against any TCP stack.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self._handshake()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handshake(self):
        f = self.sock.makefile("rwb", 0)
        f.write(b"GET / HTTP/1.1\r\nHost: echo.websocket.org\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Key: foo\r\n\r\n")
        self.status_line = f.readline()
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break

    # -- frames, as webrepl_cli.py's websocket class --
    def write(self, data, frame=FRAME_BINARY):
        if len(data) < 126:
            header = struct.pack(">BB", frame, len(data))
        else:
            header = struct.pack(">BBH", frame, 126, len(data))
        self.sock.sendall(header)
        self.sock.sendall(data)

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ProtocolFailure("connection closed")
            data += chunk
        return data

    def read(self, size, text_ok=False):
        if not self.buf:
            while True:
                flags, length = struct.unpack(">BB", self._exactly(2))
                if length == 126:
                    (length,) = struct.unpack(">H", self._exactly(2))
                elif length == 127:
                    raise ProtocolFailure("64-bit frame length: webrepl_cli.py cannot read it")
                if flags == FRAME_BINARY or (text_ok and flags == FRAME_TEXT):
                    break
                self._exactly(length)  # another frame type: skipped
            self.buf = self._exactly(length)
        data, self.buf = self.buf[:size], self.buf[size:]
        if len(data) != size:
            raise ProtocolFailure("frame shorter than the record read from it")
        return data

    # -- WebREPL --
    def login(self, password):
        while True:
            if self.read(1, text_ok=True) == b":":
                if self.read(1, text_ok=True) != b" ":
                    raise ProtocolFailure("no space after the password prompt")
                break
        self.write(password.encode("utf-8") + b"\r")

    def _response(self):
        sig, code = struct.unpack("<2sH", self.read(4))
        if sig != b"WB":
            raise ProtocolFailure("not a WB response: %r" % sig)
        return code

    def version(self):
        self.write(struct.pack(REQUEST, b"WA", GET_VERSION, 0, 0, 0, 0, b""))
        return struct.unpack("<BBB", self.read(3))

    def put(self, remote, data):
        """Returns the final WB code (webrepl_cli.py asserts both are 0)."""
        name = remote.encode("utf-8")
        record = struct.pack(REQUEST, b"WA", PUT_FILE, 0, 0, len(data), len(name), name)
        self.write(record[:10])
        self.write(record[10:])
        code = self._response()
        if code:
            raise ProtocolFailure("put refused before the data: WB %d" % code)
        for start in range(0, len(data), 1024):
            self.write(data[start:start + 1024])
        return self._response()

    def get(self, remote):
        name = remote.encode("utf-8")
        self.write(struct.pack(REQUEST, b"WA", GET_FILE, 0, 0, 0, len(name), name))
        code = self._response()
        if code:
            raise ProtocolFailure("get refused: WB %d" % code)
        data = b""
        while True:
            self.write(b"\0")
            (size,) = struct.unpack("<H", self.read(2))
            if size == 0:
                break
            data += self.read(size)
        code = self._response()
        if code:
            raise ProtocolFailure("get failed: WB %d" % code)
        return data
