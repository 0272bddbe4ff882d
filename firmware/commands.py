# Host commands (docs/firmware.md "Downlink"): decoded and run once
# downlink.py has verified the packet that carries them. Nearly every reply is
# a plain ack, so this module is imported only when a packet carries commands,
# and unloaded right after (MODULES): on a board it would otherwise take heap
# for good. rotate-key is only noted here; App.rotate applies it after the
# cycle (a command runs with the heap at its fullest: the reading and the
# reply in flight, this module loaded; too full for HKDF and a second set of
# keys in 48k).
#
# The payload is decoded here rather than with mpseal.control, which holds the
# host's encoders too: loading it would intern ~20 names a board never frees,
# and push the name pool past its next doubling (300 names, ~3.6 KB on the
# unix port; docs/firmware.md "Memory and size"). The layout is
# mpseal.control's (ack = acked seq u32 | command*, command = opcode u8 |
# length u8 | argument), and the opcodes below are its CMD_* values;
# tests/test_firmware_units.py checks both against mpseal.control.
import struct
from micropython import const

import mpseal

import flashfs

_READ_NOW = const(1)  # mpseal.control.CMD_READ_NOW ...
_SET_INTERVAL = const(2)
_REBOOT = const(3)
_ROTATE_KEY = const(4)
# Console names, by opcode - 1 (the host's mpseal.control.CMD_NAMES)
_NAMES = ("read-now", "set-interval", "reboot", "rotate-key")
MODULES = ("commands", "settings")  # what a command may load


def handle(downlink, header, payload):
    """Decodes an ack with commands or a command packet, marks the host
    sequence number seen, runs the commands (at most once, see run()).
    Returns the acked device seq (None for a command packet). Raises
    InvalidPacket for a malformed payload, before anything has run."""
    acked = None
    i = 0
    if header.type == mpseal.TYPE_ACK:
        if len(payload) < 4:
            raise mpseal.InvalidPacket("bad_payload", "ack too short")
        acked = struct.unpack(">I", payload[:4])[0]
        i = 4
    commands = []
    while i < len(payload):
        end = i + 2 + (payload[i + 1] if i + 1 < len(payload) else 0)
        if i + 2 > len(payload) or end > len(payload):
            raise mpseal.InvalidPacket("bad_payload", "command truncated")
        commands.append((payload[i], bytes(payload[i + 2 : end])))
        i = end
    downlink.window.update(header.seq)
    if commands:
        run(downlink, header.seq, commands)
    return acked


def run(downlink, seq, commands):
    """/cmdseq.dat keeps the highest host seq a command ran under, written
    BEFORE the commands run: a command runs at most once, a reboot command
    cannot loop, and a recorded packet replayed after a reboot is refused."""
    c = downlink.counters
    if downlink.executed is None:
        raw = flashfs.read_atomic("/cmdseq.dat")
        try:
            downlink.executed = int(raw) if raw else 0
        except ValueError:
            downlink.executed = 0xFFFFFFFF  # unreadable: refuse commands rather than risk re-running them
    if seq <= downlink.executed:
        c.commands_refused += len(commands)
        return
    downlink.executed = seq
    flashfs.write_atomic("/cmdseq.dat", b"%d" % seq)
    for code, value in commands:
        try:
            ok = downlink.on_command(code, value)
        except mpseal.InvalidPacket:  # a malformed argument (a test's handler may raise it)
            ok = False
        if ok:
            c.commands += 1
        else:
            c.commands_refused += 1


def apply(app, code, value):
    """One command on the app (App.command): `value` is its argument bytes.
    True if understood and well-formed. Settings it changes are written into
    /config.json too."""
    cfg = app.cfg
    if code == _READ_NOW:
        app.read_now = True
    elif code == _SET_INTERVAL and len(value) == 4:
        cfg.interval_s = struct.unpack(">I", value)[0]
        import settings  # unloaded with this module (MODULES)

        settings.save({"interval_s": cfg.interval_s})
    elif code == _REBOOT:
        app.reboot = True  # after this cycle, once the ack is handled
    elif code == _ROTATE_KEY and len(value) == 33:  # new epoch u8 | new 32-byte master key
        app.rotation = bytes(value)  # applied after this cycle (App.rotate)
    else:
        return False
    app.log("command %s" % _NAMES[code - 1])
    return True
