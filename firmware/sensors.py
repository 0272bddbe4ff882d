# Sensors named in config.json "sensors": each object's "type" picks a driver;
# each read() adds its values (mpseal.payload channel names) to a dict and
# raises OSError when the sensor fails (app.py counts it and carries on).
# Real drivers, and the table of their type names, are in sensors_hw.py,
# imported only when a real sensor is configured: a board without one never
# loads their code or interns their names (docs/firmware.md "Memory").
class Synthetic:
    """Made-up but plausible values that change every reading: for tests, the
    demo and benchmarks (no hardware, no sleeps)."""

    def __init__(self):
        self.n = 0

    def read(self, values):
        self.n += 1
        values["temperature"] = 20.0 + (self.n % 50) / 10
        values["humidity"] = 45.0 + (self.n % 20) / 2
        values["battery"] = 3.9 - (self.n % 100) / 1000


def build(sensors):
    """The drivers for config.json's list of sensor objects, in order."""
    result = []
    for spec in sensors:
        if spec["type"] == "synthetic":
            result.append(Synthetic())
        else:
            import sensors_hw

            result.append(sensors_hw.build(spec))
    return result
