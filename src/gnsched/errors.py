"""User-facing errors.

Every mistake a user can make (bad option, missing file, unknown task) raises
:class:`GNSError` with one sentence that names the bad value and what is allowed.
The CLI turns it into that sentence on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations


class GNSError(ValueError):
    """A clear, one-sentence error about user input."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`GNSError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise GNSError(message)
