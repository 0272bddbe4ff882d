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
        # Missing: no command ever ran (provisioning clears it). Unreadable:
        # unknown (None), so no command runs until a resync (recovery.py).
        executed, why = seqstore.read("/cmdseq.dat")
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
        self.downlink.executed = None if why == 2 else executed or 0
        for transport in self.transports:
            if hasattr(transport, "handle"):  # it checks each reply while it waits (transport_udp)
                transport.handle = self.downlink.handle
                transport.seqs = self.seqs  # a LoRa resend takes a fresh FCnt from it (transport_lorawan)
        self.values = {}
        self.read_now = False
        self.reboot = False
        self.settings = {}  # what commands noted, until settings.apply applies it (commands.py)
        self.old = None  # [seq, cycles] of a queue head left unacked while later packets were acked (flush)
        self.heap_high = 0
        self.why = None  # why readings stay queued (a transport's reason), None while they are delivered
        self.start = time.ticks_ms()  # for run_ms in STATS

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    # --- commands (called by downlink once a command packet is verified) ---
    def command(self, code, value, seq):
        """Notes command `code` with its argument bytes `value`, received
        under host seq `seq`."""
        import commands  # loaded by downlink for this packet, unloaded after it (commands.py)

        return commands.apply(self, code, value, seq)

    def log(self, text):
        if self.cfg.log:
            print(text)

    # --- one reading ---
    def measure(self, seq):
        values = self.values
        values.clear()
        for sensor in self.sensors:
            try:
                sensor.read(values)
            except OSError:  # DHT timing, a loose probe: counted, the others still report
                self.counters.sensor_errors += 1
        s = lazy.state
        if s:  # the OTA status (docs/ota.md): channels by number, no names interned
            values[9] = s >> 2  # app_release
            if s & 1:
                values[10] = 1  # app_on_trial
        packet = mpseal.seal(self.keys, self.cfg.device_id, seq, encode_values(values), epoch=self.cfg.epoch)
        self.counters.readings += 1
        self.log("sealed %d" % seq)
        return packet

    def deliver(self, seq, packet):
        """Tries each transport in order; _ACKED, _KEEP (no ack: queue it) or
        _REJECTED (the host refused this packet for good)."""
        c = self.counters
        d = self.downlink
        d.awaiting = seq
        why = self.why
        transport = None  # after the loop: the last one tried, whose `why` says why the packet stays queued
        status_led.light(True)
        try:
            for transport in self.transports:
                reply = transport.send(packet)
                c.sent += 1
                if reply is not None:
                    # A transport with `handle` returns only the reply it
                    # accepted; the others return the first one.
                    if hasattr(transport, "handle") or d.handle(reply):
                        c.acked += 1
                        self.log("acked %d via %s" % (seq, transport.name))
                        why = None
                        return _ACKED
                elif getattr(transport, "rejected", None):  # refused for good (transport_http)
                    c.rejected += 1
                    self.log("rejected %d: %s" % (seq, transport.rejected))
                    return _REJECTED
            why = getattr(transport, "why", None) or "no ack came back"  # a reply that did not open: bad_replies, stale_acks
            return _KEEP
        finally:
            d.awaiting = None  # from now on an ack names nothing we wait for
            status_led.light(False)
            # One console line each time the reason readings stay queued
            # changes (no Wi-Fi, no route, no ack, refused: reason), and when
            # they are delivered again; never one per cycle.
            if why != self.why:
                self.why = why
                print("mpseal link: readings stay queued: %s" % why if why else "mpseal link: up again, readings are delivered")

    def queue(self, seq, packet):
        self.outbox.push(seq, packet)
        self.counters.queued += 1
        self.counters.dropped = self.outbox.dropped
        self.log("queued %d" % seq)

    def flush(self):
        """Sends queued packets oldest first. When the head gets no ack, the
        one behind it is tried: no ack either means the link is down (keep
        the order, try next cycle); an ack means the host refuses the head
        (over UDP it answers refusals with silence), and after _ABANDON_AFTER
        such cycles it leaves the queue, counted as rejected (recovery.py)."""
        outbox = self.outbox
        head = 0  # a head that got no ack this cycle: the ones behind it are tried
        counted = False
        for _ in range(_MAX_FLUSH_PER_CYCLE):
            item = outbox.oldest(head)
            if item is None:
                return
            seq, packet = item
            if self.deliver(seq, packet) == _KEEP:
                if head:
                    return  # two in a row: the link is down
                head = seq
                continue
            outbox.remove(seq)
            self.feed()
            if not outbox.seqs:
                self.downlink.previous = None  # nothing left sealed under a key before a rotation
            if self.downlink.commands:  # run them before the next ack could bring more
                self.poll()
            if head and not counted:  # the head got no ack, a later packet did: rare (recovery.py)
                counted = True
                if lazy.call("recovery", "run", self, head):
                    head = 0  # the head was dropped: go on from the new head

    def poll(self):
        """Takes packets the host sent unasked (commands, e.g. by SMS), then
        runs the commands that came (downlink.commands) and applies what
        they noted (self.settings): here, with the exchange's garbage
        collectable, each module loaded only for it."""
        d = self.downlink
        for transport in self.transports:
            if hasattr(transport, "poll"):
                packet = transport.poll()
                if packet is not None:
                    d.handle(packet)
        if d.commands:
            gc.collect()
            lazy.call("commands", "handle", d)
        if self.settings:
            gc.collect()
            lazy.call("settings", "apply", self)

    def cycle(self):
        seq = None
        if self.downlink.executed is not None:
            try:
                seq = self.seqs.next()
            except OSError:  # the reservation could not be written (flash full?): recovery.py says so
                pass
        if seq is None:  # no sequence number: recovery.py (resync, or one status line) - rare, loaded for it
            seq = lazy.call("recovery", "run", self)
            if seq is None:
                self.poll()
                return
        packet = self.measure(seq)
        if len(self.outbox.seqs):
            self.queue(seq, packet)  # behind the backlog: the host sees numbers in order
            self.flush()
        elif self.deliver(seq, packet) == _KEEP:
            self.queue(seq, packet)
            status_led.blink(_BLINKS_QUEUED)
        packet = None  # garbage before poll() runs any commands
        self.poll()

    def safe_cycle(self):
        try:
            self.cycle()
            if lazy.state & 1:  # a trial boot (docs/ota.md): confirm it, or reset towards the rollback
                lazy.call("ota_trial_check", "check", self)
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
        if self.reboot and not self.settings:
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
            if self.reboot and not self.settings:  # once /cmdseq.dat has it: a reboot never loops
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
        if isinstance(cfg, ValueError):  # boot.py's reason the file is bad
            raise cfg
        gc.collect()  # the checking code's heap back, in one piece, before the App takes its share
        return App(cfg)
    except ValueError as exc:  # includes config.ConfigError
        print("mpseal: %s" % exc)
        status_led.blink(_BLINKS_CONFIG)
        return None


def main():
    app = start()
    if app is not None:
        app.run()
