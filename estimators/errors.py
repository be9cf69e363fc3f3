"""The one exception type estimators raise for bad input."""


class InvalidInput(ValueError):
    """Input an estimator cannot score; the message names the problem in one line."""
