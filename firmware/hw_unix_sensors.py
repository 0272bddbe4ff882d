# Simulated sensor drivers for the unix port (see hw_unix.driver): the same
# classes and methods as MicroPython's dht, onewire and ds18x20 modules,
# returning a slow sine around room climate.
import math
import time


def _wave(period_s, low, high):
    phase = (time.time() % period_s) / period_s
    return low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * phase))


class _DHT:
    def __init__(self, pin):
        self.pin = pin
        self._t = self._h = None

    def measure(self):
        self._t = _wave(600, 19.0, 24.0)
        self._h = _wave(900, 40.0, 60.0)

    def temperature(self):
        return self._round(self._t)

    def humidity(self):
        return self._round(self._h)


class _DHT11(_DHT):
    def _round(self, v):
        return int(v)  # the DHT11 reports whole units


class _DHT22(_DHT):
    def _round(self, v):
        return int(v * 10) / 10


class dht:  # noqa: N801  (stands in for the `dht` module)
    DHT11 = _DHT11
    DHT22 = _DHT22


class _OneWire:
    def __init__(self, pin):
        self.pin = pin


class _DS18X20:
    ROM = bytearray(b"\x28\x01\x02\x03\x04\x05\x06\x9d")

    def __init__(self, ow):
        self.ow = ow

    def scan(self):
        return [self.ROM]

    def convert_temp(self):
        pass

    def read_temp(self, rom):
        return int(_wave(1200, 8.0, 12.0) * 16) / 16  # 1/16 degree steps


class onewire:  # noqa: N801
    OneWire = _OneWire


class ds18x20:  # noqa: N801
    DS18X20 = _DS18X20

