"""How the library quotes another library's error inside its own one-line messages."""

from __future__ import annotations


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of ``err``, stripped (an exception's type name when it says nothing):
    TorchRL, torch and Hydra put their tracebacks and hints on the lines after it."""
    text = str(err)
    fallback = type(err).__name__ if isinstance(err, BaseException) else ""
    return next((line.strip() for line in text.splitlines() if line.strip()), fallback)
