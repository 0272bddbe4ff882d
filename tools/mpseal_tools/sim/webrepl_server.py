"""The virtual board's WebREPL server: what MicroPython's webrepl.py,
websocket_helper.py, modwebsocket.c and modwebrepl.c do on a board, on
loopback, in front of the same REPL as the pty.

Accepts what a board accepts, no more and no less strict:
- handshake as websocket_helper.server_handshake: the request line is
  skipped, only `Sec-WebSocket-Key` (spelled exactly so) is read, any value
  (the official webrepl_cli.py sends "foo"), no version header needed;
- frames as modwebsocket: masked (browsers, the websockets library) or
  unmasked (webrepl_cli.py); 7- or 16-bit lengths; a close frame is answered
  with an empty close; ping/pong are ignored; the server's frames are
  unmasked and never use 64-bit lengths;
- one session at a time: a second client is closed at once, as webrepl.py
  rejects a "Concurrent WebREPL connection";
- the password line may come in text or binary frames; text frames are the
  console; a binary frame starts an 82-byte "WA" file request (which may span
  frames: webrepl_cli.py sends it in two).
File transfers stream through the board in FLASH_CHUNK pieces (a flash
sector), so memory stays bounded whatever the file size; TCP flow control
holds the client back while the board writes.

Does NOT model (deliberate differences from a board):
- a failed put/get answers b"WB" + errno (28 = flash full, 2 = no such file)
  where modwebrepl raises and drops the session; a failed put removes the
  partial file (modwebrepl leaves it), and the rest of its data is read and
  discarded so the session stays usable;
- file transfers run between REPL commands: they wait while a program runs
  without returning to the REPL (an ESP8266 serves them whenever the program
  sleeps); there is no deadline of our own on a transfer;
- the HTML page newer webrepl.py serves to a plain browser request (a
  request without a key is closed), Wi-Fi, TLS, and the 9-byte password limit.
"""
import asyncio
import base64
import hashlib
import struct

from mpseal_tools.board.webrepl import GET_FILE, GET_VERSION, PUT_FILE, REQUEST_SIZE, parse_request, response

GET_CHUNK = 256  # modwebrepl's readbuf: bytes of file per chunk of a get
FLASH_CHUNK = 4096  # bytes per write/read on the board's flash (one sector)
VERSION = bytes((1, 29, 0))
EIO = 5
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE = 0x0, 0x1, 0x2, 0x8
FRAME_MAX = 0xFFFF  # modwebsocket writes 7- or 16-bit lengths only
HEADER_LINE_MAX = 1024


class SessionClosed(Exception):
    """The client went away or broke the websocket protocol."""


async def serve(board, host, port):
    sessions = board.webrepl_sessions = []  # closed by the board when it stops

    async def accept(reader, writer):
        if sessions:  # webrepl.py: "Concurrent WebREPL connection ... rejected"
            writer.close()
            return
        session = Session(board, reader, writer)
        sessions.append(session)
        try:
            await session.run()
        finally:
            sessions.remove(session)
            writer.close()

    server = await asyncio.start_server(accept, host, port)
    board.webrepl_addr = server.sockets[0].getsockname()[:2]  # the real port when 0 was asked for
    return server


async def server_handshake(reader, writer):
    """websocket_helper.server_handshake: True when the client asked for a websocket."""
    await reader.readline()  # "GET / HTTP/1.1": not looked at
    key = None
    while True:
        line = await reader.readline()
        if not line or len(line) > HEADER_LINE_MAX:
            return False
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip() == b"Sec-WebSocket-Key":
            key = value.strip()
    if not key:
        return False
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    await writer.drain()
    return True


class WebSocket:
    """modwebsocket's framing over asyncio streams."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def _exactly(self, n):
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise SessionClosed()

    async def receive(self):
        """(opcode, payload) of the next data frame; SessionClosed at the end."""
        while True:
            head = await self._exactly(2)
            opcode, length, masked = head[0] & 0x0F, head[1] & 0x7F, head[1] & 0x80
            if length == 126:
                (length,) = struct.unpack(">H", await self._exactly(2))
            elif length == 127:
                raise SessionClosed()  # modwebsocket asserts on 64-bit lengths
            mask = await self._exactly(4) if masked else None
            payload = await self._exactly(length)
            if mask and payload:
                key = (mask * (length // 4 + 1))[:length]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
            if opcode == OP_CLOSE:
                await self._send_frame(0x80 | OP_CLOSE, b"")
                raise SessionClosed()
            if opcode in (OP_CONT, OP_TEXT, OP_BINARY):
                return opcode, payload
            # ping, pong and reserved opcodes: ignored, as modwebsocket does

    async def _send_frame(self, first_byte, payload):
        if len(payload) < 126:
            header = struct.pack(">BB", first_byte, len(payload))
        else:
            header = struct.pack(">BBH", first_byte, 126, len(payload))
        try:
            self.writer.write(header + payload)
            await self.writer.drain()
        except ConnectionError:
            raise SessionClosed()

    async def send(self, payload, opcode=OP_BINARY):
        for start in range(0, max(len(payload), 1), FRAME_MAX):
            await self._send_frame(0x80 | opcode, payload[start:start + FRAME_MAX])

    async def send_text(self, text):
        await self.send(text.encode("utf-8") if isinstance(text, str) else text, OP_TEXT)


class Session:
    def __init__(self, board, reader, writer):
        self.board, self.reader, self.writer = board, reader, writer
        self.ws = WebSocket(reader, writer)
        self.binary = bytearray()  # binary bytes not consumed yet (requests, file data, get acks)
        self.outgoing = asyncio.Queue()
        self.console_sender = None

    async def run(self):
        try:
            if not await server_handshake(self.reader, self.writer):
                return
            await self.ws.send_text("Password: ")
            if not await self._login():
                await self.ws.send_text("\r\nAccess denied\r\n")
                return
            await self.ws.send_text("\r\nWebREPL connected\r\n>>> ")
            self.board.terminals.append(self.outgoing.put_nowait)
            self.console_sender = asyncio.ensure_future(self._send_console())
            try:
                while True:
                    await self._take(REQUEST_SIZE)  # fills self.binary; console input goes on meanwhile
                    await self._file_request()
            finally:
                self.board.terminals.remove(self.outgoing.put_nowait)
                self.console_sender.cancel()
        except SessionClosed:
            pass
        except ConnectionError:
            pass

    async def _login(self):
        typed = b""
        while True:
            _opcode, data = await self.ws.receive()
            for ch in data:
                if ch in b"\r\n":
                    return typed.decode("utf-8", "replace") == self.board.password
                typed += bytes((ch,))

    async def _send_console(self):
        while True:
            data = await self.outgoing.get()
            try:
                await self.ws.send_text(data)  # console bytes go out as text frames, as modwebrepl's
            except SessionClosed:
                return

    async def _take(self, n, peek=True):
        """Waits until n binary bytes are buffered (console text frames are fed
        to the REPL meanwhile); returns and consumes them unless peek."""
        while len(self.binary) < n:
            opcode, data = await self.ws.receive()
            if opcode == OP_TEXT:
                self.board.feed(data)
            else:
                self.binary += data
        if peek:
            return None
        data = bytes(self.binary[:n])
        del self.binary[:n]
        return data

    async def _bytes(self, n):
        return await self._take(n, peek=False)

    async def _file_request(self):
        try:
            kind, name, size = parse_request(await self._bytes(REQUEST_SIZE))
        except ValueError:
            self.binary.clear()  # garbage: resynchronise on the next request
            return
        if kind == GET_VERSION:
            await self.ws.send(VERSION)
        elif kind == PUT_FILE:
            await self._put(name, size)
        elif kind == GET_FILE:
            await self._get(name)

    async def _board(self, kind, payload=b""):
        """(ok, payload or errno) of a request to the board's CPU."""
        status, reply = await self.board.file_request(kind, payload)
        if status == "ok":
            return True, reply
        try:
            return False, int(reply)
        except ValueError:
            return False, EIO

    async def _put(self, name, size):
        path = name.encode("utf-8")
        ok, code = await self._board("popen", path)
        if not ok:
            await self.ws.send(response(code))
            return
        await self.ws.send(response(0))
        left, error = size, 0
        try:
            while left:
                # Up to one flash sector at a time: what arrived, or what is still due.
                await self._take(1)
                piece = await self._bytes(min(left, len(self.binary), FLASH_CHUNK))
                left -= len(piece)
                if not error:
                    ok, code = await self._board("pwrite", piece)
                    error = 0 if ok else code
            if not error:
                ok, code = await self._board("pclose")
                error = 0 if ok else code
        finally:
            if error or left:  # failed, or the client went away mid-file: no partial file
                await self._board("pabort", path)
        await self.ws.send(response(error))

    async def _get(self, name):
        ok, code = await self._board("gopen", name.encode("utf-8"))
        if not ok:
            await self.ws.send(response(code))
            return
        await self.ws.send(response(0))
        buffered, error = b"", 0
        try:
            while True:
                ack = await self._bytes(1)  # the client's b"\0": ready for the next chunk
                if ack != b"\0":
                    raise SessionClosed()
                if not buffered and not error:
                    ok, data = await self._board("gread", b"%d" % FLASH_CHUNK)
                    buffered, error = (data, 0) if ok else (b"", data)
                chunk, buffered = buffered[:GET_CHUNK], buffered[GET_CHUNK:]
                await self.ws.send(struct.pack("<H", len(chunk)) + chunk)
                if not chunk:  # the empty chunk ends the file
                    break
        finally:
            await self._board("gclose")
        await self.ws.send(response(error))
