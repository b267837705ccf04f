"""User-facing errors.

A `UserError` is bad input or a missing resource the user can fix. The entry point prints its
message (one readable paragraph, no traceback) and exits with status 2. Everything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or a missing resource, with a message that says how to fix it."""

    exit_code = 2
