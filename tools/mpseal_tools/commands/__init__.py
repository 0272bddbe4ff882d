"""CLI shells: each module adds its subcommands to the table in mpseal_tools/cli.py."""
