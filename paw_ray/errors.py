"""User-facing errors: the ``paw-ray`` command prints their message (which names the
input and the problem) and exits with status 2, without a traceback."""


class PawRayError(Exception):
    """Bad input or state a user can fix: the message says what and where."""


class StageFailed(PawRayError):
    """A stage (or one of its part tasks) whose training failed after its allowed retries."""


def root_message(e: BaseException) -> str:
    """The innermost error's last line: what a user needs, not a wall of Ray traceback."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__
