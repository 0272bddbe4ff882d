# Drivers for real sensors (imported by sensors.build only when config.json
# names one, to keep the heap free on a board that has none of them), and the
# table of their type names.
import time

import hw

ADC_FULL_SCALE = 1024
DEFAULT_ADC_VOLTS = 3.2  # Wemos D1 mini: A0 has a 220k/100k divider to 3.2 V full scale
DS18B20_CONVERT_MS = 750  # 12-bit conversion time from the datasheet


class Dht:
    """DHT11/DHT22 on one GPIO (spec: {"type": "dht22", "pin": 4})."""

    def __init__(self, spec):
        dht = hw.driver("dht")
        driver = dht.DHT11 if spec["type"] == "dht11" else dht.DHT22
        self.sensor = driver(hw.Pin(spec.get("pin", 4)))

    def read(self, values):
        self.sensor.measure()
        values["temperature"] = self.sensor.temperature()
        values["humidity"] = self.sensor.humidity()


class Ds18b20:
    """DS18B20 probe(s) on a 1-Wire bus; the first is "temperature", others
    "t2", "t3", ... (spec: {"type": "ds18b20", "pin": 5})."""

    def __init__(self, spec):
        self.bus = hw.driver("ds18x20").DS18X20(hw.driver("onewire").OneWire(hw.Pin(spec.get("pin", 5))))
        self.roms = self.bus.scan()

    def read(self, values):
        if not self.roms:
            raise OSError("ds18b20: no probe on the bus")
        self.bus.convert_temp()
        if not hw.SIMULATED:
            time.sleep_ms(DS18B20_CONVERT_MS)
        for i in range(len(self.roms)):
            values["temperature" if i == 0 else "t%d" % (i + 1)] = self.bus.read_temp(self.roms[i])


class Battery:
    """Supply voltage on the ADC (spec: {"type": "battery", "volts_full_scale":
    4.2} when a battery divider feeds A0)."""

    def __init__(self, spec):
        self.adc = hw.ADC(0)
        self.scale = spec.get("volts_full_scale", DEFAULT_ADC_VOLTS) / ADC_FULL_SCALE

    def read(self, values):
        values["battery"] = self.adc.read() * self.scale


# config.json sensor "type" -> driver ("synthetic" is in sensors.py)
TYPES = {"dht11": Dht, "dht22": Dht, "ds18b20": Ds18b20, "battery": Battery}


def build(spec):
    kind = spec["type"]
    if kind not in TYPES:
        known = sorted(TYPES) + ["synthetic"]
        raise ValueError("config.json: sensors: unknown type %r (known: %s)" % (kind, ", ".join(sorted(known))))
    return TYPES[kind](spec)
