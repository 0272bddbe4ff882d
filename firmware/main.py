# Runs after boot.py. All the work is in app.py, which compiles to .mpy
# (main.py itself is always compiled from source on the board, so keep it tiny).
# The app is imported here on every boot, trial boots too: run from boot.py,
# boot.py's own code (compiled on the board) stayed in the heap the whole run,
# and an updated board did not fit in 48k.
try:
    import app

    app.main()
except Exception as x:
    # On a trial boot (docs/ota.md) a release that raises, even at import,
    # resets: its boots are counted, and rolled back past the limit.
    import lazy

    if lazy.state & 1:
        import sys
        import hw

        sys.print_exception(x)
        hw.reset()
    raise
