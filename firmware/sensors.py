# Sensors named in config.json "sensors": each object's "type" picks a class
# below; each read() adds its values (mpseal.payload channel names) to a dict
# and raises OSError when the sensor fails (app.py counts it and carries on).
# Real drivers are in sensors_hw.py and come from the hardware seam, so the
# unix port gets simulated ones.
class Synthetic:
    """Made-up but plausible values that change every reading: for tests, the
    demo and benchmarks (no hardware, no sleeps)."""

    def __init__(self, spec):
        self.n = 0

    def read(self, values):
        self.n += 1
        values["temperature"] = 20.0 + (self.n % 50) / 10
        values["humidity"] = 45.0 + (self.n % 20) / 2
        values["battery"] = 3.9 - (self.n % 100) / 1000


# type -> class name in sensors_hw.py (synthetic lives here)
TYPES = {"synthetic": None, "dht11": "Dht", "dht22": "Dht", "ds18b20": "Ds18b20", "battery": "Battery"}


def build(specs):
    sensors = []
    for spec in specs:
        kind = spec["type"]
        if kind not in TYPES:
            raise ValueError("config.json: sensors: unknown type %r (known: %s)" % (kind, ", ".join(sorted(TYPES))))
        if TYPES[kind] is None:
            sensors.append(Synthetic(spec))
        else:
            import sensors_hw

            sensors.append(getattr(sensors_hw, TYPES[kind])(spec))
    return sensors
