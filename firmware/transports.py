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
        result.append(transport)
    return result
