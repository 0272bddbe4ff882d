# The LoRa radio's corner of the hardware seam (hw.py): the SPI bus and pins
# sx1276.py talks through. A module of its own, loaded only by
# transport_lorawan, because every name a module brings stays interned on a
# board for good (docs/firmware.md "Memory and size"): boards without a radio
# should not pay for these. The ESP8266 gets the real bus; the unix port a
# simulated SX1276 register file (hw_unix_sx1276.py: no radio on this machine).
import hw


def bus(nss, dio0=None, reset=None):
    """(spi, nss, dio0, reset) for sx1276.SX1276. On the ESP8266: the
    hardware SPI(1) on SCK GPIO14 (D5), MOSI GPIO13 (D7), MISO GPIO12 (D6),
    5 MHz, mode 0 (the SX1276 samples on the rising edge, clock idle low; it
    allows up to 10 MHz); chip select, DIO0 and reset on the configured
    GPIOs (None = not wired: IRQ flags are then polled over SPI)."""
    if hw.SIMULATED:
        import hw_unix_sx1276

        return hw_unix_sx1276.bus()
    import machine

    Pin = machine.Pin
    return (
        machine.SPI(1, baudrate=5000000, polarity=0, phase=0),
        Pin(nss, Pin.OUT, value=1),
        None if dio0 is None else Pin(dio0, Pin.IN),
        None if reset is None else Pin(reset, Pin.OUT, value=1),
    )
