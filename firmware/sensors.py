# Sensors named in config.json "sensors": each object's "type" picks a driver;
# each read() adds its values (mpseal.payload channel names) to a dict and
# raises OSError when the sensor fails (app.py counts it and carries on).
# Each real sensor type has its own small module (sensor_dht.py,
# sensor_ds18b20.py, sensor_battery.py), imported only when configured: a
# board loads and interns the names of exactly the drivers it has
# (docs/firmware.md "Memory").
#
# The sensor type names are config.py's _SENSOR_TYPES (checked there, before
# any driver loads); the module of a type is derived from its name below.
# Each driver module has a class Sensor and `build = Sensor`: `build` is a
# name the board has anyway (names are interned for good: docs/firmware.md
# "Memory and size").


class Synthetic:
    """Made-up but plausible values that change every reading: for tests, the
    demo and benchmarks (no hardware, no sleeps). Its readings carry the
    channel "synthetic" = 1 (docs/protocol.md), so the host can tell them
    from measured ones; in place of a made-up battery voltage, which keeps
    the payload in one AES block (12 bytes)."""

    def __init__(self, value):  # its config object (nothing to set)
        self.n = 0

    def read(self, values):
        self.n += 1
        values["temperature"] = 20.0 + (self.n % 50) / 10
        values["humidity"] = 45.0 + (self.n % 20) / 2
        values["synthetic"] = 1


def build(sensors):
    """The drivers for config.json's list of sensor objects (checked by
    config.py), in order."""
    result = []
    for value in sensors:  # `value`, not a new name (docs/firmware.md "Memory and size")
        kind = value["type"]
        if kind == "synthetic":
            result.append(Synthetic(value))
        else:  # dht11, dht22: sensor_dht; ds18b20: sensor_ds18b20; battery: sensor_battery
            result.append(__import__("sensor_" + ("dht" if kind[:3] == "dht" else kind)).build(value))
    return result
