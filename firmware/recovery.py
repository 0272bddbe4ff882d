# What a board does when it has no sequence number for a reading (rare, so
# loaded only then and unloaded after: lazy.py). docs/protocol.md section 5:
#   - /seq.dat missing, torn or unreadable (or /cmdseq.dat unreadable): ask
#     the host with a sealed resync request bound to a fresh random nonce;
#     an authentic answer carrying that nonce (downlink.py checks it) gives
#     the highest device seq the host accepted and its host seq. The board
#     continues above both that and its own queue, so no number is reused.
#   - the reservation could not be written (flash full): retried next cycle.
#   - 2**32-1 used: sealing stops; the host is told once (reason 3).
# The first reading of a boot without a sequence number prints one status
# line; every one is counted (`unsequenced`).
# It also drops a queued packet the host never acks while it acks the ones
# behind it (App.flush; over UDP the host answers a refusal with silence), so
# one such packet never blocks the queue.
from micropython import const

import mpseal
from mpseal.aes import random_bytes

import flashfs

_LAST = const(0xFFFFFFFF)  # mpseal.packet.MAX_SEQ
_UNREADABLE = const(2)  # resync reasons (mpseal.control.RESYNC_REASONS)
_EXHAUSTED = const(3)
# A queued packet left unacked while the ones behind it are acked, on this
# many cycles, is refused by the host for good.
_ABANDON_AFTER = const(3)


def run(app, seq=0):
    """seq 0: the sequence number for this cycle's reading after a recovery,
    or None (the reading is not taken, and counted). seq: the queue head
    that got no ack this cycle while a later packet did; True if it was
    dropped (counted as rejected)."""
    if seq:
        # app.old: [head, cycles it was skipped] (an existing name: each new
        # one costs board RAM for good)
        old = app.old
        if old is None or old[0] != seq:
            old = app.old = [seq, 0]
        old[1] += 1
        if old[1] < _ABANDON_AFTER:
            return False
        app.outbox.remove(seq)
        app.counters.rejected += 1
        app.log("rejected %d: %s" % (seq, "dropped"))
        app.old = None
        return True
    seqs = app.seqs
    c = app.counters
    first = not c.unsequenced
    if seqs.next_seq is None or app.downlink.executed is None:
        # seqs.limit holds why the store is unknown (seqstore.py)
        if not resync(app, seqs.limit if seqs.next_seq is None else _UNREADABLE):
            if first:
                print("mpseal: sequence store lost: no readings until the host answers a resync")
            c.unsequenced += 1
            return None
    if seqs.next_seq <= _LAST:
        try:
            return seqs.next()
        except OSError:
            if first:
                print("mpseal: cannot write %s (flash full?): no readings until it can be written" % seqs.path)
    elif first:
        print("mpseal: sequence numbers used up (2**32-1): sealing stopped; re-provision the board")
        resync(app, _EXHAUSTED)  # tells the host why the board went quiet
    c.unsequenced += 1
    return None


def resync(app, why):
    """Sends a resync request over each transport in order until one brings
    the answer. (The loop of App.deliver, without its ack counting: kept
    here so the app does not carry this rare code.) True once the
    sequence store, and /cmdseq.dat if it was lost, are known again."""
    d = app.downlink
    c = app.counters
    nonce = random_bytes(16)
    packet = mpseal.seal(app.keys, app.cfg.device_id, 0, nonce + bytes((why,)), type=4, epoch=app.cfg.epoch)
    d.awaiting = nonce  # downlink.py replaces it with (device seq, host seq) for the right answer
    try:
        for transport in app.transports:
            reply = transport.send(packet)
            c.sent += 1
            if reply is not None and (hasattr(transport, "handle") or d.handle(reply)):
                break
        answer = d.awaiting
    finally:
        d.awaiting = None
    if not isinstance(answer, tuple) or why == _EXHAUSTED:
        return False
    device_seq, host_seq = answer
    if d.executed is None:
        d.executed = host_seq  # no command sealed before the answer runs again
        flashfs.write_atomic("/cmdseq.dat", b"%d %d\n" % (host_seq, host_seq))
    seqs = app.seqs
    if seqs.next_seq is None:
        queued = app.outbox.seqs
        start = max(device_seq, queued[-1] if queued else 0) + 1
        seqs.next_seq = seqs.limit = start  # next() reserves from here
        app.log("resynced %d" % start)
    return True
