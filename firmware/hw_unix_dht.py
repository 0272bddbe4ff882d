# Stands in for MicroPython's `dht` module on the unix port (hw_unix.driver):
# the same classes and methods, returning a slow sine around room climate.
# Not modelled: the sensor's timing, checksum errors, the 2 s minimum interval.
import math
import time


def wave(period_s, low, high):
    """A slow sine between low and high (also used by hw_unix_ds18x20)."""
    return low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * (time.time() % period_s) / period_s))


class _DHT:
    def __init__(self, pin):
        self.pin = pin
        self.t = self.h = 0

    def measure(self):
        self.t = wave(600, 19.0, 24.0)
        self.h = wave(900, 40.0, 60.0)

    def temperature(self):
        return self.round(self.t)

    def humidity(self):
        return self.round(self.h)


class DHT11(_DHT):
    def round(self, v):
        return int(v)  # the DHT11 reports whole units


class DHT22(_DHT):
    def round(self, v):
        return int(v * 10) / 10
