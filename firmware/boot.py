# Runs first at every start (power-on, reset, deep-sleep wake): joins Wi-Fi
# and starts WebREPL when /config.json asks for it. Never raises: main.py
# reports a bad config, and a board without Wi-Fi still queues readings.
# The work is in a function so nothing it imports stays bound in the board's
# global namespace (boot.py runs in __main__), and config is unloaded after
# it; the checked config itself is handed to app.py (lazy.config).
import gc


def boot():
    # The first stage of OTA updates (docs/ota.md), before any /lib module
    # loads: on a board with update state, /ota_versions.mpy (at the flash
    # root, never replaced by an update) finishes a switch between app
    # versions and counts a trial boot. Returns what becomes lazy.state. By
    # __import__ and with names the app already has: an import statement would
    # intern "ota_versions" on boards that never load it; os and sys are
    # imported here, not at the top, to keep them out of boot's globals.
    import os
    import sys

    for x in ("/ota/state.txt", "/ota-offer.bin"):
        try:
            os.stat(x)
        except OSError:
            continue
        try:
            return __import__("ota_versions").boot()
        except Exception as exc:  # noqa: BLE001  never stop a boot: /lib runs as it is
            sys.print_exception(exc)
            return 0
        finally:
            sys.modules.pop("ota_versions", None)
    return 0


x = boot()
del boot  # the name is one the board has anyway (the launcher's module)
# The first stage's garbage (a switch lists and removes folders) goes before
# the app's long-lived modules load, or they fill in around it and leave
# holes: a board just updated then ran out of heap at 48k.
gc.collect()
import hw  # noqa: E402  (after the first stage: it may have replaced /lib)
import lazy  # noqa: E402

lazy.state = x
del x

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
        if lazy.state & 2:  # an update-offer: fetched and checked now, before the app's modules load
            lazy.call("ota_updater", "run", config)  # ends in a reset
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
