"""One-line messages: every job turns a library's exception, or Ctrl-C, into the one line it prints.

Library messages can be empty (``str(OSError())`` is ``""``) or span a whole traceback of their own
(TensorFlow's ``OpError``, google-api-core). :func:`first_line` is safe for both, so a promised
one-line error never becomes an ``IndexError`` traceback. :func:`interrupted` is what a job says
when the user presses Ctrl-C: what was interrupted and how to go on, instead of a traceback. It
imports nothing but the standard library, so the pipeline, the trainer and the cloud submitter can
all use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

INTERRUPTED = 130
"""The exit status of a job stopped by Ctrl-C (128 + SIGINT), as a shell reports it."""


def interrupted(prog: str, what: str) -> int:
    """Say in one line on stderr that ``prog`` was interrupted and ``what`` to do now, then nothing
    more: threads that notice the interruption after this line (a runner's, a library's) stay
    quiet while the process exits. Returns the exit status."""
    print(f"\n{prog}: interrupted: {what}", file=sys.stderr, flush=True)
    threading.excepthook = lambda args: None
    logging.disable(logging.CRITICAL)
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    return INTERRUPTED


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
