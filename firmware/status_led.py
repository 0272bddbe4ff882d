# The status LED: lit while the board talks to the host; a short blink
# pattern tells a person looking at the board what went wrong.
import time

import hw

BLINK_MS = 80
BLINKS_QUEUED = 2  # no ack: the reading went into the flash queue
BLINKS_CONFIG = 5  # bad /config.json: the app stopped


class StatusLed:
    def __init__(self, pin=hw.LED_PIN, active_low=hw.LED_ACTIVE_LOW):
        self.active_low = active_low
        self.pin = hw.Pin(pin, hw.Pin.OUT, value=1 if active_low else 0)

    def set(self, lit):
        self.pin.value((not lit) if self.active_low else lit)

    def blink(self, times):
        if hw.SIMULATED:
            return  # nobody looks at a simulated LED; keep fast mode fast
        for _ in range(times):
            self.set(True)
            time.sleep_ms(BLINK_MS)
            self.set(False)
            time.sleep_ms(BLINK_MS)
