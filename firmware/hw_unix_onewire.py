# Stands in for MicroPython's `onewire` module on the unix port
# (hw_unix.driver). Not modelled: the bus itself (hw_unix_ds18x20 answers).
class OneWire:
    def __init__(self, pin):
        self.pin = pin
