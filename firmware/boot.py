# Runs first at every start (power-on, reset, deep-sleep wake): joins Wi-Fi
# and starts WebREPL when /config.json asks for it. Never raises: main.py
# reports a bad config, and a board without Wi-Fi still queues readings.
# The work is in a function so nothing it imports stays bound in the board's
# global namespace (boot.py runs in __main__), and config is unloaded after
# it; the checked config itself is handed to app.py (lazy.config).
import gc

import hw
import lazy

# Collect after every 4 KB allocated while modules load. Loading a module
# leaves short-lived garbage between its long-lived code; collected late, that
# garbage becomes holes too small for later allocations (the unix port then
# needs ~70k of heap for ~51 KB of live data, with this ~56k). The app calls
# gc.collect() every cycle anyway.
gc.threshold(4096)


def _boot():
    hw.quiet_boot()
    try:
        config = lazy.call("config", "load")  # `config`, not a new name: boot.py is compiled on the board, every name interned
        # Kept for app.start(), which would otherwise load the checking code
        # and parse the file again with all the app's modules in: that was
        # the heap's peak at boot (docs/firmware.md "Memory and size").
        lazy.config = config
        if config.wifi:
            if not hw.wifi_connect(config.wifi["ssid"], config.wifi.get("password", "")):
                print("boot: Wi-Fi %r not joined yet; readings will be queued" % config.wifi["ssid"])
        if config.webrepl:
            hw.webrepl_start(config.webrepl["password"])
    except Exception as exc:  # noqa: BLE001  (main.py says what is wrong)
        if lazy.config is None and isinstance(exc, ValueError):
            # A bad /config.json (config.ConfigError): app.start() prints it,
            # once, without loading the checking code a second time (that
            # second load, with the app's modules in, is what failed at 48k).
            lazy.config = exc
        else:
            print("boot: %s" % exc)


_boot()
del _boot
