"""One error type for everything a user can get wrong.

Commands raise :class:`KwsError` (or a subclass) with a message that says what
is wrong and, where possible, what to do. The CLI prints it as a single line and
exits with ``exit_code``; only ``--debug`` shows the traceback.
"""

from __future__ import annotations


class KwsError(Exception):
    """A problem the user can fix: bad input, missing file, wrong board..."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class AudioError(KwsError):
    """An audio file that cannot be read or used; its message is ``"<path>: <what is wrong>"``."""

    def reason(self) -> str:
        """What is wrong, without the path (for reports that list the path beside it)."""
        return self.one_line().split(": ", 1)[-1]


class DataError(KwsError):
    """A dataset problem: empty folder, missing keyword, bad manifest..."""


class ModelError(KwsError):
    """A model, bundle or checkpoint problem."""


class BoardError(KwsError):
    """A board, port or deployment problem."""
