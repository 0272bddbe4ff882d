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
#   leaves the app's queue (send() returns a reply, b"", exactly when it went
#   out: the app's `handle` contract, as transport_udp) and waits here, in
#   flash (/unacked/<seq in hex>, until 64 newer ones went out: an ack speaks
#   for no more; nothing of it in RAM, the heap has little to spare at 48k),
#   for a *cumulative ack*: the host's highest stored seq and a bitmap of the 63 below it
#   (docs/protocol.md, type 6), sent a few times a day. lorawan_acks.py
#   (loaded per ack) releases what it names stored, drops what the host can
#   no longer take (64 or more below its highest: too_old there), and notes
#   the gaps; poll() resends one gap per call when the duty cycle allows.
#   A resend carries the same sealed bytes (same mpseal seq: stored once)
#   under a FRESH FCnt taken from the app's sequence store (the app hands it
#   over as `seqs`): TTN's frame counter check needs every FCnt above the last,
#   and a number from that store is never used twice. That number is then
#   never a reading's seq (the host sees a gap there that nobody fills). A
#   reading the app queued before a resend (duty cycle) and sends after it
#   gets a fresh FCnt the same way (its seq is below the resend's FCnt).
#   After a reboot that is not known: such a frame may go out under its own,
#   lower, FCnt, TTN drops it, and the next cumulative ack shows the gap.
# - A downlink caught in RX1/RX2 goes to `handle` (the app's Downlink.handle:
#   commands, acks, replay rules); a fresh cumulative ack comes back from it
#   as its payload.
import gc
import time
from micropython import const

import hw_lora
import lazy
import flashfs
import lorawan
import sx1276

_RX_SYMBOLS = const(8)  # preamble symbols a window waits for (RegSymbTimeout)
_RX_EARLY_MS = const(20)  # open each window a little early: board and gateway clocks differ
_SLICE_MS = const(100)  # waits are sliced to feed the watchdog
_KEEP = const(64)  # a frame is kept until 64 newer ones went out (the most a cumulative ack speaks for)
UNACKED = "/unacked"


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
        self.fcnt = 0  # highest FCnt sent since boot
        # `seqs`: the app's SequenceStore (App sets it), fresh FCnts. `missing`: set by lorawan_acks
        # (each attribute costs heap at 48k, so none before): the seqs the last cumulative ack found
        # missing, oldest first (poll() resends them).
        flashfs.ensure_dir(UNACKED)
        # (the last downlink's RSSI/SNR stay on self.radio: no copies here, each attribute costs heap)

    def send(self, packet):
        self.sent = False
        self.rejected = None
        if len(packet) > self.region.MAX_PAYLOAD[self.dr]:
            self.rejected = "too_big_for_dr"  # never fits this data rate: the app drops it
            return None
        seq = int.from_bytes(packet[7:11], "big")
        if not self.transmit(seq, packet):
            return None
        flashfs.write_atomic(UNACKED + "/%08x" % seq, packet)  # until a cumulative ack names it stored
        # 64 below it: the host's window can no longer take that one if it is missing. Removed by
        # name (no listing, no count in RAM); what a forward jump skipped goes with the next ack.
        flashfs.remove(UNACKED + "/%08x" % (seq - _KEEP))
        return b""  # on air: the app's part is done

    def poll(self):
        """Resends the oldest reading a cumulative ack found missing
        (lorawan_acks.resend, loaded only while there are some). Returns
        None: downlinks in its windows go to `handle`."""
        if getattr(self, "missing", None):
            lazy.call("lorawan_acks", "resend", self)

    def transmit(self, seq, packet, fresh=False):
        """One uplink carrying `packet`, then RX1/RX2. Its FCnt is `seq`, or
        a fresh number from the sequence store when `fresh` (a resend) or a
        frame went out under a higher FCnt since boot (a reading queued
        before a resend): TTN drops an FCnt not above the last. Returns the
        FCnt when it went on air; 0 when no sub-band may send yet, no fresh
        number is to be had, or the radio failed (no TxDone): the caller
        keeps the packet."""
        self.sent = False
        r = self.region
        now = time.ticks_ms()
        channel = lorawan.pick(r, self.duty, now)
        if channel is None:
            return 0  # duty cycle: every sub-band must stay silent a while longer
        sf = r.SPREADING_FACTOR[self.dr]
        bw = r.BANDWIDTH_KHZ[self.dr]
        airtime = lorawan.airtime_us(sf, bw, len(packet) + 13, r.PREAMBLE) // 1000 + 1  # + MHDR, FHDR, FPort, MIC
        band = r.CHANNEL_BAND[channel]
        if self.gap and airtime * r.BANDS[band] > self.gap:
            self.rejected = "duty_cycle"  # this frame's off-time is longer than the sleep: never legal here
            return 0
        fcnt = seq
        if fresh or 0 < seq <= self.fcnt:  # (seq 0: a resync request, FCnt 0: TTN drops it, docs/lorawan.md)
            try:
                fcnt = self.seqs.next()  # then never a reading's seq: FCnts only grow, never repeat
            except (OSError, AttributeError):  # the reservation could not be written (try again later), no store yet
                fcnt = None
            if fcnt is None:  # also: no sequence store (resync pending) or used up
                return 0
        frame = lorawan.uplink(self.session, fcnt, self.fport, packet)
        radio = self.radio
        try:
            radio.configure(r.CHANNELS[channel], sf, bw, self.power, r.SYNC_WORD, r.PREAMBLE)
            self.duty.used(band, now, airtime)  # before TX: a frame that failed may still have radiated
            self.fcnt = fcnt
            radio.transmit(frame, 2 * airtime + 100, self.idle)
            self.sent = True
            done = time.ticks_ms()
            frame = None
            gc.collect()  # the sealing's garbage back before a downlink needs room (48k: a few KB to spare); RX1 is 1 s away
            reply = self.listen(done, self.rx1_delay, r.CHANNELS[channel], self.dr)
            if reply is None:
                reply = self.listen(done, self.rx1_delay + 1000, r.RX2_FREQUENCY, self.rx2_dr)
            radio.sleep()
        except OSError:  # SPI trouble, no TxDone: link trouble, the caller keeps the packet
            return 0
        if reply is not None and self.handle is not None:
            got = self.handle(reply)  # acks, commands (run by the app after the cycle)
            if got and got is not True:  # a fresh cumulative ack's payload (downlink.py)
                lazy.call("lorawan_acks", "take", self, got)  # rare: loaded for this ack only
        return fcnt

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
        gc.collect()  # the receive's garbage back before opening (48k: little to spare)
        opened = lazy.call("lorawan_downlink", "open_frame", self.session, frame, self.down)  # rare: loaded for this frame only
        if opened is None:
            return None  # not for us, forged, or a replayed FCnt
        self.down = opened[0]
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
