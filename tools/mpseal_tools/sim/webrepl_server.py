"""The virtual board's WebREPL server: modwebrepl's protocol (see webrepl.py)
on loopback, in front of the same REPL as the pty.

Differences from a real board, on purpose: a failed put/get answers
b"WB" + errno (28 = flash full) where modwebrepl asserts and drops the
session; file transfers run between REPL commands, so they wait while a
program runs without returning to the REPL (a real ESP8266 serves them
whenever the program sleeps).
"""
import asyncio

from mpseal_tools.board.webrepl import GET_FILE, GET_VERSION, PUT_FILE, REQUEST_SIZE, parse_request, response

GET_CHUNK = 256  # modwebrepl's readbuf
VERSION = bytes((1, 29, 0))
EIO = 5


async def serve(board, host, port):
    import websockets

    async def session(ws):
        await Session(board, ws).run()

    server = await websockets.serve(session, host, port, compression=None, max_size=None)
    board.webrepl_addr = server.sockets[0].getsockname()[:2]  # the real port when 0 was asked for
    return server


class Session:
    def __init__(self, board, ws):
        self.board, self.ws = board, ws
        self.binary = bytearray()
        self.outgoing = asyncio.Queue()

    async def run(self):
        import websockets

        try:
            await self.ws.send("Password: ")
            if not await self._login():
                await self.ws.send("\r\nAccess denied\r\n")
                return
            await self.ws.send("\r\nWebREPL connected\r\n>>> ")
            self.board.terminals.append(self.outgoing.put_nowait)
            sender = asyncio.ensure_future(self._send_console())
            try:
                async for message in self.ws:
                    if isinstance(message, str):
                        self.board.feed(message.encode("utf-8"))
                    else:
                        self.binary += message
                        await self._file_requests()
            finally:
                self.board.terminals.remove(self.outgoing.put_nowait)
                sender.cancel()
        except websockets.ConnectionClosed:
            pass

    async def _login(self):
        typed = ""
        while True:
            message = await self.ws.recv()
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            for ch in text:
                if ch in "\r\n":
                    return typed == self.board.password
                typed += ch

    async def _send_console(self):
        while True:
            data = await self.outgoing.get()
            # Console bytes go out as text frames, as modwebrepl does.
            await self.ws.send(data.decode("utf-8", "replace"))

    async def _take(self, n):
        while len(self.binary) < n:
            message = await self.ws.recv()
            if isinstance(message, str):
                self.board.feed(message.encode("utf-8"))
            else:
                self.binary += message
        data = bytes(self.binary[:n])
        del self.binary[:n]
        return data

    async def _file_requests(self):
        while len(self.binary) >= REQUEST_SIZE:
            try:
                kind, name, size = parse_request(await self._take(REQUEST_SIZE))
            except ValueError:
                self.binary.clear()  # garbage: resynchronise on the next request
                return
            if kind == GET_VERSION:
                await self.ws.send(VERSION)
            elif kind == PUT_FILE:
                await self.ws.send(response(0))
                data = await self._take(size)
                status, reply = await self.board.file_request("put", name.encode() + b"\0" + data)
                await self.ws.send(response(0 if status == "ok" else int(reply or EIO)))
            elif kind == GET_FILE:
                status, data = await self.board.file_request("get", name.encode())
                if status != "ok":
                    await self.ws.send(response(int(data or EIO)))
                    continue
                await self.ws.send(response(0))
                chunks = [data[i:i + GET_CHUNK] for i in range(0, len(data), GET_CHUNK)] + [b""]
                for chunk in chunks:  # the empty chunk ends the file
                    await self._take(1)  # the client's b"\0": ready for the next chunk
                    await self.ws.send(len(chunk).to_bytes(2, "little") + chunk)
                await self.ws.send(response(0))
