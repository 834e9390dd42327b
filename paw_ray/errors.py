"""User-facing errors: the ``paw-ray`` command prints their message (which names the
input and the problem) and exits with status 2, without a traceback."""


class PawRayError(Exception):
    """Bad input or state a user can fix: the message says what and where."""
