# Builds the transport list from config.transports: each name is a module
# transport_<name>.py with a class Transport (interface in docs/firmware.md),
# tried in the listed order. New transports plug in without touching this.


class _NoIdle:
    @staticmethod
    def idle():
        pass


def load(config, idle=None):
    """Returns [Transport]; `idle` is called while a transport waits (the app
    passes the watchdog's feed)."""
    result = []
    for name in config.transports:
        try:
            module = __import__("transport_" + name)
        except ImportError as exc:
            if ("transport_" + name) not in str(exc):
                raise  # the transport exists but something it imports does not
            raise ValueError("config.json: transports: no transport named %r (no transport_%s.py on the board)" % (name, name))
        transport = module.Transport(config)
        transport.idle = idle or _NoIdle.idle
        result.append(transport)
    return result
