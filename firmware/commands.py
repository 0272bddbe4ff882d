# Host commands (docs/firmware.md "Downlink"): decoded and run once
# downlink.py has verified the packet that carries them. Nearly every reply is
# a plain ack, so this module is imported only when a packet carries commands,
# and unloaded right after (MODULES), with mpseal.control, config (for save)
# and HKDF (rotate-key): on a board they would otherwise take heap for good.
import mpseal
from mpseal import control

import flashfs

EXECUTED_PATH = "/cmdseq.dat"
MODULES = ("commands", "mpseal.control", "config", "mpseal.hkdf")  # what a command may load


def _read_executed():
    raw = flashfs.read_atomic(EXECUTED_PATH)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0xFFFFFFFF  # unreadable: refuse commands rather than risk re-running them


def handle(downlink, header, payload):
    """Decodes an ack with commands or a command packet, marks the host
    sequence number seen, runs the commands (at most once, see run()).
    Returns the acked device seq (None for a command packet). Raises
    InvalidPacket for a malformed payload, before anything has run."""
    if header.type == mpseal.TYPE_ACK:
        acked, commands = control.decode_ack(payload)
    else:
        acked, commands = None, control.decode_commands(payload)
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
        downlink.executed = _read_executed()
    if seq <= downlink.executed:
        c.commands_refused += len(commands)
        return
    downlink.executed = seq
    flashfs.write_atomic(EXECUTED_PATH, b"%d" % seq)
    for opcode, argument in commands:
        try:
            ok = downlink.on_command(opcode, argument)
        except mpseal.InvalidPacket:  # a malformed argument
            ok = False
        if ok:
            c.commands += 1
        else:
            c.commands_refused += 1


def apply(app, opcode, argument):
    """One command on the app (App.command); True if understood. Settings
    it changes are written into /config.json too."""
    cfg = app.cfg
    if opcode == control.CMD_READ_NOW:
        app.read_now = True
    elif opcode == control.CMD_SET_INTERVAL:
        cfg.interval_s = control.interval_of(argument)
        _save({"interval_s": cfg.interval_s})
    elif opcode == control.CMD_REBOOT:
        app.reboot = True  # after this cycle, once the ack is handled
    elif opcode == control.CMD_ROTATE_KEY:
        if len(argument) != 33:
            return False
        cfg.epoch = argument[0]
        cfg.key = bytes(argument[1:])
        _save({"epoch": cfg.epoch, "key": cfg.key})
        d = app.downlink
        d.previous = (d.epoch, d.keys)  # kept in RAM to open acks for packets queued under the old key
        app.keys = d.keys = mpseal.DeviceKeys(cfg.key)
        d.epoch = cfg.epoch
    else:
        return False
    app.log("command %s" % control.CMD_NAMES.get(opcode, opcode))
    return True


def _save(changes):
    import config  # unloaded with this module (MODULES)

    config.save(changes)
