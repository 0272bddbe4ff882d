"""Stand-ins for hardware that cannot exist on this machine, for the flash and
provisioning tests: a pseudo-terminal whose far end is nothing, a fake ESP32
ROM bootloader, and the real MicroPython unix port behind a pseudo-terminal."""
import os
import pty
import select
import struct
import subprocess
import threading
import tty


class EmptyPty:
    """A serial port with nothing behind it (a board that is off or absent)."""

    def __init__(self):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)

    def close(self):
        os.close(self.master)
        os.close(self.slave)


class FakeEsp32Rom(EmptyPty):
    """MOCK of a chip (hardware): speaks just enough of the ESP ROM
    bootloader's SLIP protocol to be identified as an ESP32 by esptool: answers
    SYNC, refuses other commands like a ROM does ("invalid message"), and
    reports the ESP32's chip magic value on READ_REG."""

    ESP32_MAGIC = 0x00F01D83
    SYNC, READ_REG = 0x08, 0x0A

    def __init__(self):
        super().__init__()
        threading.Thread(target=self._serve, daemon=True).start()

    def _send(self, op, value, data):
        body = struct.pack("<BBHI", 1, op, len(data), value) + data
        body = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(self.master, b"\xc0" + body + b"\xc0")

    def _handle(self, frame):
        frame = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
        if len(frame) < 8:
            return
        op = frame[1]
        if op == self.SYNC:
            for _ in range(8):  # the ROM answers a sync eight times
                self._send(op, 0x20120707, b"\x00\x00\x00\x00")
        elif op == self.READ_REG:
            self._send(op, self.ESP32_MAGIC, b"\x00\x00\x00\x00")
        else:
            self._send(op, 0, b"\x01\x05\x00\x00")

    def _serve(self):
        buf = b""
        while True:
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while buf.count(b"\xc0") >= 2:
                start = buf.index(b"\xc0")
                end = buf.index(b"\xc0", start + 1)
                if end > start + 1:
                    self._handle(buf[start + 1 : end])
                buf = buf[end:]


class MicroPythonOnPty:
    """The real MicroPython unix port's REPL at the far end of a serial port:
    what a freshly flashed board looks like from the host."""

    def __init__(self, micropython, args=()):
        self.host_master, host_slave = pty.openpty()
        tty.setraw(host_slave)
        self._host_slave = host_slave
        self.port = os.ttyname(host_slave)
        self.board_master, board_slave = pty.openpty()
        self.proc = subprocess.Popen([micropython] + list(args), stdin=board_slave, stdout=board_slave,
                                     stderr=board_slave, close_fds=True)
        os.close(board_slave)
        threading.Thread(target=self._bridge, daemon=True).start()

    def _bridge(self):
        fds = [self.host_master, self.board_master]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.2)
                for fd in ready:
                    data = os.read(fd, 4096)
                    os.write(self.board_master if fd == self.host_master else self.host_master, data)
            except OSError:
                return

    def close(self):
        self.proc.kill()
        self.proc.wait()
        for fd in (self.host_master, self._host_slave, self.board_master):
            os.close(fd)
