# The SMS modem's UART on the unix port (hw_unix.modem_uart): a serial device
# file, e.g. the simulated modem's pseudo-terminal (mpseal_tools.sim.modem),
# named by MPSEAL_UART<id>. Its own module so the sensor simulations are not
# loaded for it.
import os
import select


class _FileUart:
    """machine.UART stand-in for the SMS modem (added for transport_sms): a
    serial device file, e.g. the simulated modem's pseudo-terminal, opened
    as a file. read() returns only what is there, like the ESP8266 UART."""

    def __init__(self, path):
        self._file = open(path, "r+b")
        self._poller = select.poll()
        self._poller.register(self._file, select.POLLIN)

    def any(self):
        return 1 if self._poller.poll(0) else 0

    def read(self, nbytes=1):
        out = bytearray()
        # FileIO.read(n) would block for all n bytes: take one at a time
        while len(out) < nbytes and self._poller.poll(0):
            byte = self._file.read(1)
            if not byte:
                raise OSError("modem gone (end of file)")
            out.extend(byte)
        return bytes(out) if out else None

    def write(self, data):
        return self._file.write(data)


def modem_uart(id, baudrate):
    """The UART the SMS modem hangs on. Unix port: MPSEAL_UART<id> names the
    serial device (the baud rate is the device's business there)."""
    path = os.getenv("MPSEAL_UART%d" % id)
    if not path:
        raise OSError("no modem: set MPSEAL_UART%d to the modem's serial device" % id)
    # The board's root is its flash folder (VfsPosix), so /dev is not there:
    # the device's own folder is mounted beside it, once.
    folder, name = path.rsplit("/", 1)
    mount_point = "/.uart%d" % id
    try:
        os.mount(os.VfsPosix(folder or "/"), mount_point)
    except OSError:
        pass  # mounted by an earlier open (EPERM: already a mount point)
    return _FileUart(mount_point + "/" + name)
