# A trial boot (docs/ota.md; main.py resets when the app raises): check(),
# after each cycle, confirms the new version once a reading it
# sealed is acked, or resets after too many readings without, so its boots
# are counted towards the rollback. Loaded
# only on trial boots, and small: it runs mid-cycle with the heap at its
# fullest, so it only writes /ota/confirmed.txt; the first stage
# (ota_versions.boot) turns that into the confirmed state at the next boot,
# before anything else loads. Until then the app runs on as confirmed.
from micropython import const

# An interval board passes through boot at every wake anyway.
_UNACKED_RESET = const(5)


def check(app):
    """The queue is sent oldest first, so an empty queue after acks means
    this boot's own readings reached the host."""
    import lazy

    version = lazy.state >> 2
    c = app.counters
    if c.acked and not len(app.outbox.seqs):
        # A plain write, no tmp + rename: a torn one holds a prefix of the
        # digits, which is no version number and confirms nothing.
        with open("/ota/confirmed.txt", "wb") as f:
            f.write(b"%d" % version)
        lazy.state &= ~1
        print("ota: v%d confirmed" % version)
    elif c.readings >= _UNACKED_RESET:
        print("ota: v%d got no ack in %d readings: resetting" % (version, c.readings))
        app.reboot = True

