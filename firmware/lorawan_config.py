# The "lorawan" section of /config.json, checked once at boot and unloaded
# (transport_lorawan calls it through lazy.call): a bad key stops the app
# with a message naming it, and never showing a key's value.
#   "lorawan": {"dev_addr": "260B1234", "nwk_s_key": 32 hex, "app_s_key": 32 hex,
#               "data_rate": 5, "tx_power": 14, "fport": 1, "region": "eu868",
#               "rx1_delay_s": 1, "rx2_data_rate": 3, "nss": 15, "dio0": null, "reset": null}
import binascii


def _hex(c, key, size):
    try:
        raw = binascii.unhexlify(c.get(key))
        if len(raw) == size:
            return raw
    except (TypeError, ValueError):
        pass
    raise ValueError("/config.json: key 'lorawan.%s' must be %d hex digits" % (key, 2 * size))


def _int(c, key, default, low, high):
    value = c.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError("/config.json: key 'lorawan.%s' must be an integer %d..%d, got %r" % (key, low, high, value))
    return value


def load(t, config):
    """Sets the checked settings on transport `t`."""
    c = config.data.get("lorawan")
    if not isinstance(c, dict):
        raise ValueError("/config.json: key 'lorawan' must be an object with dev_addr, nwk_s_key, app_s_key")
    region = c.get("region", "eu868")
    if region != "eu868":  # the one region file so far (region_eu868.py)
        raise ValueError("/config.json: key 'lorawan.region' must be \"eu868\", got %r" % region)
    t.region = r = __import__("region_" + region)
    t.session = (int.from_bytes(_hex(c, "dev_addr", 4), "big"), _hex(c, "nwk_s_key", 16), _hex(c, "app_s_key", 16))
    dr = t.dr = _int(c, "data_rate", 5, 0, len(r.SPREADING_FACTOR) - 1)
    t.power = _int(c, "tx_power", 14, 2, r.MAX_EIRP_DBM)
    t.fport = _int(c, "fport", 1, 1, 223)
    t.rx1_delay = _int(c, "rx1_delay_s", r.RX1_DELAY_S, 1, 15) * 1000
    t.rx2_dr = _int(c, "rx2_data_rate", r.RX2_DATA_RATE, 0, len(r.SPREADING_FACTOR) - 1)
    return c.get("nss", 15), c.get("dio0"), c.get("reset")
