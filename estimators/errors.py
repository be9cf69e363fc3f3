"""The one exception type estimators raise for bad input, and the one-line warning every part prints."""

import sys


class InvalidInput(ValueError):
    """Input an estimator cannot score; the message names the problem in one line."""


def warn(message: str) -> None:
    """One line on stderr, ``warning: message`` (not Python's two-line ``warnings`` format, which breaks
    progress bars and names a source line the user does not care about)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
