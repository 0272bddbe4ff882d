# Stands in for MicroPython's `ds18x20` module on the unix port
# (hw_unix.driver): one probe, a slow sine around 10 degrees in the DS18B20's
# 1/16 degree steps. Not modelled: conversion time, CRC errors, a lost probe.
from hw_unix_dht import wave


class DS18X20:
    ROM = b"\x28\x01\x02\x03\x04\x05\x06\x9d"

    def __init__(self, ow):
        self.ow = ow

    def scan(self):
        return [self.ROM]

    def convert_temp(self):
        pass

    def read_temp(self, rom):
        return int(wave(1200, 8.0, 12.0) * 16) / 16
