# Code a board needs only at boot or rarely (config checking, the transport
# loader, HKDF, command handling) is imported where it is used and then
# unloaded here, so the collector takes its bytecode back: the ESP8266 has
# about 36 KB of heap for everything (docs/firmware.md "Memory"). Only the
# qstrs (interned names) it brought stay; MicroPython never frees those.
import sys

# The Config boot.py checked, handed to app.start() so the file is not
# checked twice (app.py says why).
config = None
# The OTA update state of this boot (docs/ota.md), set by boot.py's first
# stage: version << 2 of the release it runs (0: never updated) | 2 an
# update-offer waits (boot.py runs ota_updater) | 1 on trial
# (ota_trial_check confirms it). Named "state", a name MicroPython already
# has built in: a new one would cost the name pool (docs/firmware.md).
state = 0


def unload(names):
    """Forgets the modules `names` (e.g. ("config", "mpseal.hkdf")): drops
    them from sys.modules and from their package, the two places that keep a
    module alive once nothing else refers to it."""
    for name in names:
        sys.modules.pop(name, None)
        dot = name.rfind(".")
        if dot > 0:
            package = sys.modules.get(name[:dot])
            if package is not None:
                package.__dict__.pop(name[dot + 1 :], None)


def call(name, function, *args):
    """Imports module `name`, returns its `function`(*args) and unloads it
    again (boot-only code: config checking, the transport loader). Done in
    this function on purpose: `import x` inside a longer function binds a
    local that keeps the module alive until that function returns, so the
    collector could not take it back while the caller builds the App."""
    module = __import__(name)
    try:
        return getattr(module, function)(*args)
    finally:
        unload((name,))
