"""The one exception type for user errors (bad data, bad spec, missing model).

Its message is a single line that names where the problem is (file and line when there is one). The CLI prints it and
exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class RewardkitError(Exception):
    """A user error with a one-line message, optionally prefixed by its location."""

    def __init__(self, message: str, location: object | None = None):
        text = " ".join(str(message).split())  # always one line
        super().__init__(f"{location}: {text}" if location is not None else text)
