# Builds the transport list from config.transports: each name is a module
# transport_<name>.py with a class Transport (interface in docs/firmware.md),
# tried in the listed order. New transports plug in without touching this.


def load(config, idle):
    """Returns [Transport]; `idle` is called while a transport waits (the app
    passes the watchdog's feed)."""
    result = []
    for name in config.transports:
        try:
            module = __import__("transport_%s" % name)
        except ImportError as exc:
            if ("transport_%s" % name) not in str(exc):
                raise  # the transport exists but something it imports does not
            raise ValueError("config.json: transports: no transport named %r (no transport_%s.py on the board)" % (name, name))
        transport = module.Transport(config)
        transport.idle = idle
        if getattr(transport, "version", 1) != 1:
            seal_with(transport.version)
        result.append(transport)
    return result


def seal_with(version):
    """The seal profile follows the links (docs/protocol.md): a transport
    that needs the compact v2 (transport_lorawan: 51-byte frames) makes the
    board seal every reading with it; a reading is sealed once, so every
    link then carries that packet. Done by wrapping mpseal.seal here, in
    boot-only code, so the app's call stays as it is: a UDP board at 48k
    feels even a changed call (the rotation under traffic test failed)."""
    import mpseal

    seal = mpseal.seal

    def sealed(key, device_id, seq, payload, type=1, epoch=0):
        return seal(key, device_id, seq, payload, type, epoch, version)

    mpseal.seal = sealed
