"""The error layers of every mpseal library and command.

- MpsealError: the base of every typed library error (StorageError,
  BoardError, BuildError, ...). Its message says what is wrong, in words a
  user can act on, and never how to invoke a command: libraries do not know
  which command called them.
- UserError: raised by the command layer (the commands/ folders) with the
  full "what went wrong — what to do" sentence, flags and `make` variables
  included.

The command table's one handler prints `mpseal: <message>` for
both, adding a hint for library errors that reach it unconverted, and exits
non-zero; nothing a user can cause ends in a traceback.
"""


class MpsealError(Exception):
    """A typed library error; the message says what is wrong."""

    exit_code = 1
    hint = ""  # what to do, when the error alone knows it (the command layer may know better)


class UserError(MpsealError):
    """An error the user can fix; the message says what went wrong and what to do."""
