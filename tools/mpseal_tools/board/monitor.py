"""The board's serial console: print what it says (`mpseal monitor`) and wait
for the MicroPython prompt after flashing (`wait_for_repl`)."""
import contextlib
import signal
import sys
import time

import serial

from mpseal_tools.board.connection import BoardError

REPL_PROMPT = b">>> "
INTERRUPT = b"\r\x03"  # Enter, then Ctrl-C: stops a running main.py and asks for a fresh prompt
REPL_WAIT_S = 15.0  # first boot after an erase formats the filesystem, which takes a few seconds
POKE_EVERY_S = 1.0
READ_TIMEOUT_S = 0.2
WRITE_TIMEOUT_S = 2.0


def open_serial(port, baud):
    try:
        # A write that cannot leave (flow control held, a wedged USB bridge) fails too.
        return serial.Serial(port, baud, timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S)
    except serial.SerialException as exc:
        hint = "add yourself to the 'dialout' group and log in again" if "ermission" in str(exc) else \
            "check the cable and the port name (mpseal monitor lists nothing if the board is unplugged)"
        raise BoardError("cannot open serial port %s: %s; %s" % (port, exc, hint))


def wait_for_repl(port, baud, timeout=REPL_WAIT_S, progress=None):
    """Pokes the board with Enter+Ctrl-C until MicroPython answers with its
    prompt. Returns everything the board printed meanwhile (boot banner)."""
    deadline = time.monotonic() + timeout
    seen = bytearray()
    with open_serial(port, baud) as link:
        while time.monotonic() < deadline:
            try:
                link.write(INTERRUPT)
                poke_deadline = min(deadline, time.monotonic() + POKE_EVERY_S)
                while time.monotonic() < poke_deadline:
                    seen += link.read(256)
                    if REPL_PROMPT in seen:
                        return bytes(seen)
            except serial.SerialException as exc:
                raise BoardError("serial port %s failed while waiting for the REPL: %s" % (port, exc))
            if progress:
                progress("waiting for the MicroPython prompt on %s..." % port)
    tail = bytes(seen[-80:]).decode("utf-8", "replace").strip()
    raise BoardError("no MicroPython prompt on %s within %.0f s (%s): press the board's reset button and watch "
                    "'mpseal monitor', or flash again" % (port, timeout, "it said: %r" % tail if tail else "it said nothing"))


@contextlib.contextmanager
def _ctrl_c_quits():
    """Ctrl-C must end the monitor even when whoever started us ignores
    SIGINT (nohup, `cmd &` in a script, some IDE runners): an ignored signal
    is inherited across exec, and Python then installs no handler of its own."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals to the caller
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def monitor(port, baud, out=None, err=None):
    """Copies the board's output to `out` until Ctrl-C. Returns 0."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    with open_serial(port, baud) as link, _ctrl_c_quits():
        print("mpseal: monitoring %s at %d baud; Ctrl-C to quit" % (port, baud), file=err, flush=True)
        try:
            while True:
                data = link.read(link.in_waiting or 1)
                if data:
                    out.write(data)
                    out.flush()
        except KeyboardInterrupt:
            print("\nmpseal: monitor closed", file=err)
            return 0
        except (serial.SerialException, OSError) as exc:
            raise BoardError("lost serial port %s (%s): was the board unplugged?" % (port, exc))
