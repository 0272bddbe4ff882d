# The status LED: lit while the board talks to the host; a short blink
# pattern tells a person looking at the board what went wrong. Plain module
# functions on one pin (there is one LED): a class would cost heap for
# nothing.
import time
from micropython import const

import hw

_BLINK_MS = const(80)

_pin = hw.Pin(hw.LED_PIN, hw.Pin.OUT, value=1 if hw.LED_ACTIVE_LOW else 0)  # off


def light(on):
    _pin.value((not on) if hw.LED_ACTIVE_LOW else on)


def blink(count):
    """`count` short flashes (the patterns are named in app.py)."""
    if hw.SIMULATED:
        return  # nobody looks at a simulated LED; keep fast mode fast
    for _ in range(count):
        light(True)
        time.sleep_ms(_BLINK_MS)
        light(False)
        time.sleep_ms(_BLINK_MS)
