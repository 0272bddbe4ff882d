# Runs after boot.py. All the work is in app.py, which compiles to .mpy
# (main.py itself is always compiled from source on the board, so keep it tiny).
import app

app.main()
