# DS18B20 probe(s) on a 1-Wire bus (config: {"type": "ds18b20", "pin": 5}).
# The first probe found is "temperature", the others "t2", "t3", ...
import time
from micropython import const

import hw

_CONVERT_MS = const(750)  # 12-bit conversion time from the datasheet


class Sensor:
    def __init__(self, spec):
        self.bus = hw.driver("ds18x20").DS18X20(hw.driver("onewire").OneWire(hw.Pin(spec["pin"])))
        self.roms = self.bus.scan()

    def read(self, values):
        if not self.roms:
            raise OSError("ds18b20: no probe on the bus")
        self.bus.convert_temp()
        if not hw.SIMULATED:
            time.sleep_ms(_CONVERT_MS)
        for i in range(len(self.roms)):
            values["temperature" if i == 0 else "t%d" % (i + 1)] = self.bus.read_temp(self.roms[i])


build = Sensor  # what sensors.build calls
