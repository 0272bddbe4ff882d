# Unix-port side of the hardware seam (see hw.py): the same names and
# signatures as the ESP8266 modules, so the app cannot tell them apart.
#   - sockets are real (loopback); Wi-Fi "joins" at once.
#   - flash is a folder: the launcher (mpseal_tools.sim.unix_board) mounts it at /
#     with os.VfsPosix, so /config.json, /seq.dat, /queue/... are the same
#     paths as on the board. Simulator state (RTC memory) lives in a second
#     folder mounted at /.sim, which the launcher wipes on a simulated power cut.
#   - machine.deepsleep(ms) sleeps, then exits with EXIT_DEEPSLEEP; the
#     launcher starts the process again with reset cause DEEPSLEEP_RESET, which
#     is what a board with GPIO16 wired to RST does. machine.reset() exits with
#     EXIT_RESET; a watchdog that was not fed in time exits with EXIT_WDT.
#   - sensor drivers (hw_unix_dht.py, hw_unix_onewire.py, hw_unix_ds18x20.py)
#     return smooth made-up values.
import os
import sys
import time
from micropython import const

SIMULATED = True
# esp8266 rst_info reasons, as machine.reset_cause() returns them there
_PWRON_RESET = const(0)
DEEPSLEEP_RESET = 5
# Exit codes the launcher (mpseal_tools.sim.unix_board) restarts from, as the chip would
_EXIT_DEEPSLEEP = const(75)
_EXIT_RESET = const(76)
_EXIT_WDT = const(77)
_RTC_MEMORY_SIZE = const(492)  # bytes of user RTC memory on the ESP8266
LED_PIN = 2
LED_ACTIVE_LOW = True


def reset_cause():
    cause = os.getenv("MPSEAL_RESET_CAUSE")  # set by the launcher
    return int(cause) if cause else _PWRON_RESET


def deepsleep(time_ms=0):
    if time_ms:
        time.sleep_ms(time_ms)
    sys.exit(_EXIT_DEEPSLEEP)


def reset():
    sys.exit(_EXIT_RESET)


def rename(old, new):
    # VfsPosix on the unix port resolves both absolute paths into one shared
    # buffer, so os.rename('/a', '/b') renames '/b' onto itself (ENOENT).
    # A path relative to '/' takes the other code path.
    cwd = os.getcwd()
    os.chdir("/")
    try:
        os.rename(old, new.lstrip("/"))
    finally:
        os.chdir(cwd)


def quiet_boot():
    pass


def wifi_connect(ssid, password, timeout=0, feed=None):
    return True  # loopback needs no association


def online():
    return True  # the Wi-Fi link; the host's own network stands in for it


def webrepl_start(password):
    print("webrepl: not available on the unix port (would listen on :8266)")


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, id, mode=-1, pull=-1, value=None, *, drive=None, alt=None):  # machine.Pin's signature
        self.id = id
        self.mode = mode
        self.state = 0 if value is None else value

    def value(self, value=None):
        if value is None:
            return self.state
        self.state = 1 if value else 0

    def on(self):
        self.state = 1


class ADC:
    def __init__(self, id: object = 0, *, sample_ns=None, atten=None):  # machine.ADC's (id: int or Pin)
        self.id = id

    def read(self):
        # 0..1024 for 0..1.0 V at the pin; a 4.0 V cell behind the Wemos
        # 220k/100k divider (3.2:1) and sagging slowly.
        return 800 - int(time.time() / 3600) % 60


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self._last = time.ticks_ms()

    def feed(self):
        # No timer interrupt on the unix port: a late feed is detected here,
        # and the process ends as the chip would (a hang itself is caught by
        # the launcher's own timeout, not here).
        now = time.ticks_ms()
        if time.ticks_diff(now, self._last) > self.timeout:
            print("watchdog: not fed for %d ms, resetting" % time.ticks_diff(now, self._last))
            sys.exit(_EXIT_WDT)
        self._last = now


class RTC:
    def __init__(self, id=0, *, datetime=None):  # machine.RTC's signature
        pass

    def memory(self, data=None):
        if data is None:
            try:
                with open("/.sim/rtc_memory", "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > _RTC_MEMORY_SIZE:
            raise ValueError("RTC memory holds %d bytes" % _RTC_MEMORY_SIZE)
        try:
            with open("/.sim/rtc_memory", "wb") as f:
                f.write(data)
        except OSError:
            pass  # launched without a /.sim folder: RTC memory does not survive


def driver(name):
    """The sensor driver module `name` ("dht", "onewire", "ds18x20"): here
    the simulated hw_unix_<name>, imported only when a sensor of that kind is
    configured (one module each, so a board loads only its own)."""
    return __import__("hw_unix_" + name)


def modem_uart(id, baudrate):
    """The SMS modem's UART (transport_sms): a serial device file named by
    MPSEAL_UART<id>. Imported on first use only."""
    import hw_unix_uart

    return hw_unix_uart.modem_uart(id, baudrate)
