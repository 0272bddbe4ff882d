# The hardware seam: the only module the app imports for anything that touches
# the chip (machine, network, dht, onewire, ds18x20, esp, webrepl). Both
# implementations export the same names with the ESP8266 signatures, so the
# app never asks which one it got.
import sys

if sys.platform == "esp8266":
    from hw_esp8266 import *  # noqa: F401,F403
else:  # the MicroPython unix port: simulated sensors, real sockets, a folder as flash
    from hw_unix import *  # noqa: F401,F403
