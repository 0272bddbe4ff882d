"""Stand-ins for hardware that tests, the demo and the bench use. Each module says in its docstring what it does NOT model."""
