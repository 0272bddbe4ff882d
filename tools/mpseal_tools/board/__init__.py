"""Talking to a real board: serial and WebREPL transports behind one interface, flashing, the console, the boards catalog."""
