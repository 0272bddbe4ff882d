# DHT11 / DHT22 temperature and humidity sensor on one GPIO
# (config: {"type": "dht22", "pin": 4}; pin as provisioning writes it from
# boards.yaml or --sensor dht22:D2). MicroPython's `dht` driver, through hw.
import hw


class Sensor:
    def __init__(self, spec):
        dht = hw.driver("dht")
        self.sensor = (dht.DHT11 if spec["type"] == "dht11" else dht.DHT22)(hw.Pin(spec["pin"]))

    def read(self, values):
        self.sensor.measure()
        values["temperature"] = self.sensor.temperature()
        values["humidity"] = self.sensor.humidity()


build = Sensor  # what sensors.build calls
