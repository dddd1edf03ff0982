"""One-line error messages: every job turns a library's exception into the one line it prints.

Library messages can be empty (``str(OSError())`` is ``""``) or span a whole traceback of their own
(TensorFlow's ``OpError``, google-api-core). :func:`first_line` is safe for both, so a promised
one-line error never becomes an ``IndexError`` traceback. It imports nothing, so the pipeline, the
trainer and the cloud submitter can all use it.
"""

from __future__ import annotations


def first_line(exc: BaseException | str | None) -> str:
    """The first non-empty line of an exception's message (TensorFlow's ``.message`` when it has
    one), or the exception's type name when the message is empty."""
    if isinstance(exc, BaseException):
        text = getattr(exc, "message", None)
        text = text if isinstance(text, str) and text.strip() else str(exc)
        fallback = type(exc).__name__
    else:
        text, fallback = exc or "", "no message"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else fallback
