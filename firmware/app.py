# The application: measure, seal, deliver (or queue), drain the queue, obey
# commands, sleep. main.py calls main(). The app only talks to the chip through
# hw (the hardware seam), so the same file runs on the ESP8266 and on the unix
# port. Power modes (config "power"):
#   always-on : loop forever, a machine.WDT fed every cycle and while waiting;
#   interval  : one cycle per wake, then machine.deepsleep(interval) and the
#               RTC alarm resets the chip (GPIO16 must be wired to RST).
import gc
import sys
import time
from micropython import const

import mpseal
from mpseal.values import encode_values

import counters
import downlink
import hw
import lazy
import outbox
import seqstore
import sensors
import status_led

_WDT_TIMEOUT_MS = const(8000)  # ESP8266 ignores the value (fixed ~3 s hardware timer); the unix port enforces it
_SLEEP_SLICE_MS = const(500)  # always-on waits in slices: feed the watchdog, poll downlinks
_MAX_FLUSH_PER_CYCLE = const(16)  # queued packets sent per cycle, so a long backlog never delays readings much
# machine.deepsleep(0) would sleep forever, and the ESP8266 SDK takes the time
# in microseconds as a u32: 2**32 us is 71.6 minutes.
_MAX_DEEPSLEEP_S = const(4200)
_STATS_EVERY = const(100)  # readings between STATS console lines in fast mode (interval 0, no "log")
# status_led blink patterns
_BLINKS_QUEUED = const(2)  # no ack: the reading went into the flash queue
_BLINKS_CONFIG = const(5)  # bad /config.json: the app stopped
_ACKED = const(1)
_KEEP = const(2)
_REJECTED = const(3)


class App:
    def __init__(self, cfg):
        self.cfg = cfg
        self.counters = counters.Counters()
        resume = None
        if hw.reset_cause() == hw.DEEPSLEEP_RESET:
            import rtc_memory  # interval mode only (rtc_memory.py)

            resume = rtc_memory.load(self.counters, cfg.device_id)
        self.seqs = seqstore.SequenceStore(resume=resume)
        self.keys = mpseal.DeviceKeys(cfg.key)
        lazy.unload(("mpseal.hkdf",))  # derived once; rotate-key loads it again
        self.outbox = outbox.Outbox(cfg.queue_max)
        self.outbox.dropped = self.counters.dropped
        # Only always-on has a watchdog: an ESP8266 WDT cannot be stopped, and
        # interval mode spends its time in deep sleep. (So `wdt` also says
        # which power mode runs.)
        self.wdt = hw.WDT(timeout=_WDT_TIMEOUT_MS) if cfg.power == "always-on" else None
        try:
            self.transports = lazy.call("transports", "load", cfg, self.feed)  # boot-only (lazy.py)
        finally:
            cfg.data = None  # the parsed file: only transports read it (settings.save reads it again)
        self.sensors = sensors.build(cfg.sensors)
        self.downlink = downlink.Downlink(self.keys, cfg.epoch, self.counters, self.command)
        self.values = {}
        self.read_now = False
        self.reboot = False
        self.rotation = b""  # a rotate-key command's argument, until rotate() applies it
        self.heap_high = 0
        self.start = time.ticks_ms()  # for run_ms in STATS

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    # --- commands (called by downlink once a command packet is verified) ---
    def command(self, code, value):
        """Runs command `code` with its argument bytes `value`."""
        import commands  # loaded by downlink for this packet, unloaded after it (commands.py)

        return commands.apply(self, code, value)

    def log(self, text):
        if self.cfg.log:
            print(text)

    # --- one reading ---
    def measure(self):
        values = self.values
        values.clear()
        for sensor in self.sensors:
            try:
                sensor.read(values)
            except OSError:  # DHT timing, a loose probe: counted, the others still report
                self.counters.sensor_errors += 1
        seq = self.seqs.next()
        packet = mpseal.seal(self.keys, self.cfg.device_id, seq, encode_values(values), epoch=self.cfg.epoch)
        self.counters.readings += 1
        self.log("sealed %d" % seq)
        return seq, packet

    def deliver(self, seq, packet):
        """Tries each transport in order; _ACKED, _KEEP (no ack: queue it) or
        _REJECTED (the host refused this packet for good)."""
        c = self.counters
        status_led.light(True)
        try:
            for transport in self.transports:
                reply = transport.send(packet)
                c.sent += 1
                if reply is not None:
                    if self.downlink.handle(reply, seq):
                        c.acked += 1
                        self.log("acked %d via %s" % (seq, transport.name))
                        return _ACKED
                elif getattr(transport, "rejected", None):  # refused for good (transport_http)
                    c.rejected += 1
                    self.log("rejected %d: %s" % (seq, transport.rejected))
                    return _REJECTED
            return _KEEP
        finally:
            status_led.light(False)

    def queue(self, seq, packet):
        self.outbox.push(seq, packet)
        self.counters.queued += 1
        self.counters.dropped = self.outbox.dropped
        self.log("queued %d" % seq)

    def flush(self):
        for _ in range(_MAX_FLUSH_PER_CYCLE):
            item = self.outbox.oldest()
            if item is None:
                return
            seq, packet = item
            if self.deliver(seq, packet) == _KEEP:
                return  # link still down: keep the order, try again next cycle
            self.outbox.remove(seq)
            self.feed()

    def poll(self):
        for transport in self.transports:
            if hasattr(transport, "poll"):
                packet = transport.poll()
                if packet is not None:
                    self.downlink.handle(packet)

    def cycle(self):
        seq, packet = self.measure()
        if len(self.outbox.seqs):
            self.queue(seq, packet)  # behind the backlog: the host sees numbers in order
            self.flush()
        elif self.deliver(seq, packet) == _KEEP:
            self.queue(seq, packet)
            status_led.blink(_BLINKS_QUEUED)
        self.poll()

    def rotate(self):
        """Applies a rotate-key command (noted by commands.py) after the
        cycle, when the cycle's garbage is gone. The keys are derived first:
        if that fails, key and file are unchanged."""
        value = self.rotation  # new epoch u8 | new 32-byte master key
        self.rotation = b""  # one attempt, as for every command
        epoch = value[0]
        key = bytes(value[1:])
        d = self.downlink
        # Keys of an earlier rotation: replaced below anyway, and their heap
        # is needed now (three sets do not fit in 48k on the unix port).
        d.previous = None
        gc.collect()
        keys = mpseal.DeviceKeys(key)
        lazy.unload(("mpseal.hkdf",))
        lazy.call("settings", "save", {"epoch": epoch, "key": key})
        d.previous = (d.epoch, d.keys)  # kept in RAM to open acks for packets queued under the old key
        self.keys = d.keys = keys
        self.cfg.key = key
        self.cfg.epoch = d.epoch = epoch

    def safe_cycle(self):
        try:
            self.cycle()
            if self.rotation:
                self.rotate()
        except Exception as exc:  # one bad cycle must not stop a board in the field
            self.counters.errors += 1
            sys.print_exception(exc)
        allocated = gc.mem_alloc()
        if allocated > self.heap_high:
            self.heap_high = allocated
        gc.collect()

    def stats(self):
        """Prints the STATS line (counters.py)."""
        try:
            self.counters.line(
                {
                    "queue": len(self.outbox.seqs),
                    "seq_writes": self.seqs.flash_writes,
                    "heap_high": self.heap_high,
                    "heap_live": gc.mem_alloc(),
                    "run_ms": time.ticks_diff(time.ticks_ms(), self.start),
                }
            )
        except MemoryError:  # called outside safe_cycle: a console line must not stop the board
            self.counters.errors += 1

    # --- power modes ---
    def run(self):
        if self.wdt is not None:  # always-on
            self.run_always_on()
        else:
            self.run_interval()

    def run_interval(self):
        self.safe_cycle()
        while self.read_now and not self.reboot:
            self.read_now = False
            self.safe_cycle()
        self.stats()
        import rtc_memory  # interval mode only (rtc_memory.py)

        rtc_memory.save(self.counters, self.cfg.device_id, self.seqs.next_seq)
        if self.reboot:
            hw.reset()
        hw.deepsleep(min(max(self.cfg.interval_s, 1), _MAX_DEEPSLEEP_S) * 1000)

    def run_always_on(self):
        limit = self.cfg.max_readings
        every = 1 if self.cfg.log or self.cfg.interval_s else _STATS_EVERY
        while True:
            self.feed()
            self.safe_cycle()
            readings = self.counters.readings
            if readings % every == 0:
                self.stats()
            if self.reboot:
                self.stats()
                hw.reset()
            if limit and readings >= limit:
                self.stats()
                return
            self.wait(self.cfg.interval_s * 1000)

    def wait(self, timeout):
        """Sleeps `timeout` ms unless a read-now command comes first."""
        start = time.ticks_ms()
        while not self.read_now and time.ticks_diff(time.ticks_ms(), start) < timeout:
            self.feed()
            self.poll()
            time.sleep_ms(min(_SLEEP_SLICE_MS, timeout - time.ticks_diff(time.ticks_ms(), start)))
        self.read_now = False


def start():
    """The App for /config.json, or None when it cannot start (the reason is
    printed and the LED blinks)."""
    try:
        # The checked /config.json: boot.py's (taken, so only the App keeps
        # it), or checked here when boot.py could not (it then raises the
        # reason). The checking code is let go before the App is built, so
        # the two never take heap at the same time.
        cfg = lazy.config or lazy.call("config", "load")
        lazy.config = None
        gc.collect()  # the checking code's heap back, in one piece, before the App takes its share
        return App(cfg)
    except (seqstore.SequenceStoreError, ValueError) as exc:  # ValueError includes config.ConfigError
        print("mpseal: %s" % exc)
        status_led.blink(_BLINKS_CONFIG)
        return None


def main():
    app = start()
    if app is not None:
        app.run()
