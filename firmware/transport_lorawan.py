# LoRaWAN 1.0.x uplinks through The Things Network: ABP, Class A, the region
# from config (region_eu868.py). Each mpseal packet (the compact v2 profile:
# 35 bytes for a usual reading, DR0 carries 51) goes out as the FRMPayload of
# one unconfirmed uplink; TTN decrypts FRMPayload with the AppSKey it holds
# and finds our sealed packet, which it can neither read nor forge.
#
# - FCnt: the 32-bit uplink counter IS the packet's mpseal sequence number
#   (header bytes 7..10, cleartext). The app never sends an older reading
#   after a newer one (docs/firmware.md), the sequence is reserved in flash
#   (seqstore.py: never reused across power cuts, one write per 64 readings,
#   exact over deep sleep through RTC memory), and a frame that went on air is
#   never sent again (no per-frame ack): so FCnt only grows, at no extra flash
#   write. The one repeat: a frame whose TxDone never came is queued and sent
#   again with the same bytes and FCnt; same plaintext, same keystream, so
#   nothing leaks, and if the first did go out TTN drops the second.
# - Duty cycle: each sub-band may be on air 1 % of the time (lorawan.DutyCycle);
#   when every usable band is still silent, send() returns None and the app
#   queues the packet for a later cycle. RAM accounting does not survive a
#   deep sleep, so in interval mode a frame is sent only if interval_s alone
#   is a long enough off-time for it.
# - Class A: after each uplink the radio listens once in RX1 (same channel,
#   same DR), then, if nothing came, in RX2 (869.525 MHz, DR3 on TTN). A
#   verified downlink's FRMPayload is a sealed mpseal ack/command, returned to
#   the app like a UDP reply. MAC commands (FOpts, FPort 0) are ignored: set
#   the device's MAC settings on TTN to match the config (docs/lorawan.md).
# - No ack per frame (TTN allows ~10 downlinks a day): a frame that went on air
#   counts as delivered, so the app does not queue or resend it. This uses the
#   app's `handle` contract (as transport_udp): a downlink caught in RX1/RX2
#   goes to `handle` (the app's Downlink.handle: commands, acks, replay rules)
#   here, and send() returns a reply (b"") exactly when the frame went out, so
#   the app counts it as acked. No change to app.py: a UDP board at 48k feels
#   even two more lines there (the rotation-under-traffic test failed).
import time
from micropython import const

import hw_lora
import lazy
import lorawan
import sx1276

_RX_SYMBOLS = const(8)  # preamble symbols a window waits for (RegSymbTimeout)
_RX_EARLY_MS = const(20)  # open each window a little early: board and gateway clocks differ
_SLICE_MS = const(100)  # waits are sliced to feed the watchdog


class Transport:
    name = "lorawan"
    version = 2  # the mpseal profile this link needs: v2 compact (docs/protocol.md); the app seals with it

    def __init__(self, config):
        pins = lazy.call("lorawan_config", "load", self, config)  # boot-only: sets region, session, dr, power, fport, rx1_delay, rx2_dr
        self.gap = config.interval_s * 1000 if config.power == "interval" else 0  # ms between wakes
        self.down = -1  # highest downlink FCnt accepted since boot (mpseal's own replay rules guard commands across reboots)
        self.duty = lorawan.DutyCycle(self.region.BANDS, time.ticks_diff)
        self.radio = sx1276.SX1276(*hw_lora.bus(*pins))
        seal_compact()
        self.sent = False
        self.rejected = None
        self.handle = None  # the app sets Downlink.handle
        self.rssi = self.snr = 0

    def send(self, packet):
        self.sent = False
        self.rejected = None
        r = self.region
        if len(packet) > r.MAX_PAYLOAD[self.dr]:
            self.rejected = "too_big_for_dr"  # never fits this data rate: the app drops it
            return None
        now = time.ticks_ms()
        channel = lorawan.pick(r, self.duty, now)
        if channel is None:
            return None  # duty cycle: every sub-band must stay silent a while longer
        frame = lorawan.uplink(self.session, int.from_bytes(packet[7:11], "big"), self.fport, packet)
        sf = r.SPREADING_FACTOR[self.dr]
        bw = r.BANDWIDTH_KHZ[self.dr]
        airtime = lorawan.airtime_us(sf, bw, len(frame), r.PREAMBLE) // 1000 + 1
        band = r.CHANNEL_BAND[channel]
        if self.gap and airtime * r.BANDS[band] > self.gap:
            self.rejected = "duty_cycle"  # this frame's off-time is longer than the sleep: never legal here
            return None
        radio = self.radio
        try:
            radio.configure(r.CHANNELS[channel], sf, bw, self.power, r.SYNC_WORD, r.PREAMBLE)
            self.duty.used(band, now, airtime)  # before TX: a frame that failed may still have radiated
            radio.transmit(frame, 2 * airtime + 100, self.idle)
            self.sent = True
            done = time.ticks_ms()
            reply = self.listen(done, self.rx1_delay, r.CHANNELS[channel], self.dr)
            if reply is None:
                reply = self.listen(done, self.rx1_delay + 1000, r.RX2_FREQUENCY, self.rx2_dr)
            radio.sleep()
            if reply is not None and self.handle is not None:
                self.handle(reply)  # an ack (for an earlier frame) or commands
            return b""  # on air: delivered, as far as LoRa can tell
        except OSError:  # SPI trouble, no TxDone: link trouble, the app queues the packet
            return None

    def listen(self, done, delay, frequency, dr):
        """One receive window opening `delay` ms after the uplink ended at
        `done`: the FRMPayload of a verified downlink for us, or None."""
        while True:
            left = delay - _RX_EARLY_MS - time.ticks_diff(time.ticks_ms(), done)
            if left <= 0:
                break
            self.idle()
            time.sleep_ms(min(left, _SLICE_MS))
        r = self.region
        sf = r.SPREADING_FACTOR[dr]
        bw = r.BANDWIDTH_KHZ[dr]
        radio = self.radio
        radio.configure(frequency, sf, bw, self.power, r.SYNC_WORD, r.PREAMBLE)
        frame = radio.receive(_RX_SYMBOLS, _RX_SYMBOLS * (1 << sf) // bw + 2 * _RX_EARLY_MS + 50, self.idle)
        if frame is None:
            return None
        opened = lazy.call("lorawan_downlink", "open_frame", self.session, frame, self.down)  # rare: loaded for this frame only
        if opened is None:
            return None  # not for us, forged, or a replayed FCnt
        self.down = opened[0]
        self.rssi = radio.rssi
        self.snr = radio.snr
        if not opened[1] or not opened[2]:
            return None  # MAC commands only (FPort 0) or no payload: nothing for the app
        return opened[2]

    def close(self):
        self.radio.sleep()


def seal_compact():
    """The seal profile follows the link (docs/protocol.md): this one needs
    the compact v2 (51-byte frames at DR0), so the board seals every reading
    with it; a reading is sealed once, so every link then carries that packet.
    Done by wrapping mpseal.seal here, not in app.py or transports.py: boards
    without a radio at 48k feel even a few more names or lines there."""
    import mpseal

    seal = mpseal.seal

    def sealed(key, device_id, seq, payload, type=1, epoch=0):
        return seal(key, device_id, seq, payload, type, epoch, 2)

    mpseal.seal = sealed
