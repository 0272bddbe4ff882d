class UserError(Exception):
    """An error the user can fix; the CLI prints `mpseal: <message>` and exits 1.
    The message says what went wrong and what to do."""

    exit_code = 1
