# Supply voltage on the ADC (A0). config: {"type": "battery"}, or with
# "volts_full_scale": 4.2 when a battery divider feeds A0 (the default 3.2 is
# the Wemos D1 mini's 220k/100k divider: A0 reads 1024 at 3.2 V).
import hw


class Sensor:
    def __init__(self, spec):
        self.adc = hw.ADC(0)
        self.scale = spec.get("volts_full_scale", 3.2) / 1024

    def read(self, values):
        values["battery"] = self.adc.read() * self.scale


build = Sensor  # what sensors.build calls
