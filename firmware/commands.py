# Host commands (docs/firmware.md "Downlink"): decoded and noted once
# downlink.py has verified the packet that carries them and found its host
# seq fresh, after the exchange (App.poll). Nearly every reply is a plain
# ack, so this module is imported only when a packet carries commands, and
# unloaded right after (lazy.call): on a board it would otherwise take heap
# for good.
#
# A command is only *noted* here (app.settings); App.apply applies what
# needs heap or flash (rotate-key, the /config.json write of set-interval)
# after the cycle, when the cycle's garbage is gone, and writes /cmdseq.dat
# only once everything took effect. A failed apply is retried on the next
# cycles, then reported (console line, `errors`): a command is never recorded
# as executed before it was.
#
# The payload is decoded here rather than with mpseal.control, which holds the
# host's encoders too: loading it would intern ~20 names a board never frees
# (docs/firmware.md "Memory and size"). The layout is mpseal.control's (ack =
# acked seq u32 | command*, command = opcode u8 | length u8 | argument), the
# opcodes below are its CMD_* values and the interval bounds its
# MIN/MAX_INTERVAL_S; tests/test_firmware_units.py checks them against it.
import struct
from micropython import const

_READ_NOW = const(1)  # mpseal.control.CMD_READ_NOW ...
_SET_INTERVAL = const(2)
_REBOOT = const(3)
_ROTATE_KEY = const(4)
_MAX_INTERVAL_S = const(604800)  # mpseal.control.MAX_INTERVAL_S (MIN is 1)
# app.settings, what commands noted for App.apply, is keyed by opcode
# (numbers cost no interned names): _SET_INTERVAL -> seconds, _ROTATE_KEY ->
# its argument (App.apply adds 5 -> its derived keys); 0 -> the host seq to record in /cmdseq.dat; -1 -> failed tries.
_UPDATE_OFFER = const(16)  # mpseal.control.CMD_UPDATE_OFFER (docs/ota.md)


def handle(downlink):
    """Decodes the commands downlink.py kept (host seq, payload, offset of
    the first command; the seq was fresh in the RAM window) and runs them,
    unless /cmdseq.dat says commands already ran under that seq. A
    malformed list runs nothing and is counted as a bad reply."""
    seq, payload, i = downlink.commands
    downlink.commands = None
    c = downlink.counters
    commands = []
    n = len(payload)
    while i < n:
        end = i + 2 + (payload[i + 1] if i + 1 < n else 0)
        if i + 2 > n or end > n:
            c.bad_replies += 1  # command truncated
            return
        commands.append((payload[i], bytes(payload[i + 2 : end])))
        i = end
    executed = downlink.executed
    if executed is None or seq <= executed:  # recorded before a reboot (or unknown until a resync)
        c.commands_refused += len(commands)
        return
    downlink.executed = seq  # in RAM at once; on flash once they took effect (App.apply)
    for code, value in commands:
        if downlink.on_command(code, value, seq):
            c.commands += 1
        else:
            c.commands_refused += 1


def apply(app, code, value, seq):
    """Notes one command on the app (App.command): `value` is its argument
    bytes, `seq` the host seq it came under. True if understood and
    well-formed; App.apply then records `seq` in /cmdseq.dat."""
    pending = app.settings
    if code == _READ_NOW and not value:
        app.read_now = True
    elif code == _SET_INTERVAL and len(value) == 4 and 1 <= struct.unpack(">I", value)[0] <= _MAX_INTERVAL_S:
        app.cfg.interval_s = pending[_SET_INTERVAL] = struct.unpack(">I", value)[0]  # in effect now; written by App.apply
    elif code == _REBOOT and not value:
        app.reboot = True  # after this cycle, once settled
    elif code == _ROTATE_KEY and len(value) == 33:  # new epoch u8 | new 32-byte master key
        pending[_ROTATE_KEY] = bytes(value)  # applied by App.apply
    elif code == _UPDATE_OFFER and 36 < len(value):
        # version u32 | release.txt sha256 | URL, kept as it came for the
        # update agent, which checks it at the next boot with the heap free
        # (ota_updater.py). At the root: creating /ota here would intern
        # "/ota", one name more mid-cycle. Rewriting it is harmless, so it
        # need not wait for App.apply.
        with open("/ota-offer.bin", "wb") as f:
            f.write(value)
        app.reboot = True
        pending[0] = seq
        app.log("command update-offer")
        return True
    else:
        return False
    pending[0] = seq
    # Console names (the host's mpseal.control.CMD_NAMES), as bytes: str
    # constants would each be interned for good.
    app.log("command %s" % (b"read-now", b"set-interval", b"reboot", b"rotate-key")[code - 1].decode())
    return True
