# Runs first at every start (power-on, reset, deep-sleep wake): joins Wi-Fi
# and starts WebREPL when /config.json asks for it. Never raises: main.py
# reports a bad config, and a board without Wi-Fi still queues readings.
import hw

hw.quiet_boot()
try:
    import config

    _cfg = config.load()
    if _cfg.wifi:
        if not hw.wifi_connect(_cfg.wifi["ssid"], _cfg.wifi.get("password", "")):
            print("boot: Wi-Fi %r not joined yet; readings will be queued" % _cfg.wifi["ssid"])
    if _cfg.webrepl:
        hw.webrepl_start(_cfg.webrepl["password"])
    del _cfg
except Exception as exc:  # noqa: BLE001  (main.py says what is wrong)
    print("boot: %s" % exc)
