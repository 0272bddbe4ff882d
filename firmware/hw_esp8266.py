# ESP8266 side of the hardware seam (see hw.py). Thin: the real MicroPython
# modules under the names the app uses, plus the few helpers whose ESP8266
# details (Wi-Fi join, WebREPL, flash quirks) would otherwise leak into the app.
import os
import time

import esp
import machine
import network
from machine import ADC, RTC, WDT, Pin, deepsleep, reset, reset_cause  # noqa: F401
from micropython import const

SIMULATED = False
DEEPSLEEP_RESET = machine.DEEPSLEEP_RESET
LED_PIN = 2  # the blue LED on ESP-12 modules (Wemos D1 mini, NodeMCU), lit when low
LED_ACTIVE_LOW = True
_WIFI_TIMEOUT_MS = const(15000)


def rename(old, new):
    # FAT (the ESP8266 default filesystem) refuses to rename onto an existing
    # file; LittleFS replaces it. Readers of atomic files also look at the
    # .tmp file, so the gap between remove and rename loses nothing.
    try:
        os.rename(old, new)
    except OSError:
        os.remove(new)
        os.rename(old, new)


def quiet_boot():
    esp.osdebug(None)  # the SDK's debug prints would garble the serial console


def wifi_connect(ssid, password, timeout=_WIFI_TIMEOUT_MS, feed=None):
    """Joins the network (waiting up to `timeout` ms); returns True when connected. `feed` keeps a
    watchdog alive while waiting."""
    network.WLAN(network.AP_IF).active(False)  # the default open AP is an attack surface
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
        start = time.ticks_ms()
        while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), start) < timeout:
            if feed:
                feed()
            time.sleep_ms(100)
    return wlan.isconnected()


def online():
    """True while the station interface has joined the Wi-Fi network (the
    transports tell 'no Wi-Fi' from 'no route' by it)."""
    return network.WLAN(network.STA_IF).isconnected()


def driver(name):
    """The sensor driver module `name` ("dht", "onewire", "ds18x20"; frozen
    into the ESP8266 firmware), imported only when a sensor needs it."""
    return __import__(name)


def webrepl_start(password):
    import webrepl

    webrepl.start(password=password)


def modem_uart(id, baudrate):
    """The UART the SMS modem hangs on (added for transport_sms). The ESP8266
    has one full UART: UART(1) can only transmit. UART(0) is also the REPL,
    so the REPL is detached from it first (the USB serial then shows modem
    traffic, not a prompt; WebREPL still works)."""
    if id == 0:
        os.dupterm(None, 1)
    return machine.UART(id, baudrate, timeout=0, rxbuf=512)
