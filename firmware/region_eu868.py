# LoRaWAN regional parameters for EU863-870 (LoRaWAN Regional Parameters
# RP002-1.0.x, section EU863-870), as data: transport_lorawan reads only these
# names, so another region (US915 needs channel masks and other DR tables) is
# another file like this one, chosen by config "lorawan.region".
#
# Uplink channels: the three every EU868 device must know (868.1/868.3/868.5)
# plus the five The Things Network's EU plan adds (867.1 .. 867.9). ABP devices
# get no CFList, so the board must be told: register the device on TTN with
# "factory preset frequencies" = these eight (docs/lorawan.md).
# As ints and bytes rather than tuples of tuples: each tuple is an object
# in the board's heap, a bytes constant is one.
CHANNELS = (868100000, 868300000, 868500000, 867100000, 867300000, 867500000, 867700000, 867900000)
CHANNEL_BAND = b"\x01\x01\x01\x00\x00\x00\x00\x00"  # index into BANDS, per channel
# ETSI EN 300 220 sub-bands the channels fall in, as 1/duty: after a frame of
# airtime T the sub-band stays silent until T * value has passed since it
# started (1 % -> 100). h1.4 865-868 MHz 1 %, h1.5 868.0-868.6 MHz 1 %,
# h1.7 869.4-869.65 MHz 10 % (RX2; only the gateway transmits there).
BANDS = b"\x64\x64\x0a"
# DR -> spreading factor and bandwidth (kHz); DR6 is SF7/250 kHz, DR7 (FSK) unused.
SPREADING_FACTOR = b"\x0c\x0b\x0a\x09\x08\x07\x07"
BANDWIDTH_KHZ = (125, 125, 125, 125, 125, 125, 250)
# Largest FRMPayload (N) per DR without FOpts: DR0-2 51, DR3 115, DR4-6 222.
MAX_PAYLOAD = b"\x33\x33\x33\x73\xde\xde\xde"
# RX1: the uplink's channel at DR - RX1DROffset (0 unless the network says
# otherwise). RX2: fixed channel; LoRaWAN's default is DR0, TTN uses DR3 (SF9).
RX2_FREQUENCY = 869525000
RX2_DATA_RATE = 3
RX1_DELAY_S = 1  # must equal the device's "RX1 delay" MAC setting on TTN
MAX_EIRP_DBM = 16
SYNC_WORD = 0x34  # public LoRaWAN networks (TTN); 0x12 is private
PREAMBLE = 8  # symbols
