"""Subcommand modules of the mpseal CLI (see cli.COMMAND_MODULES)."""
