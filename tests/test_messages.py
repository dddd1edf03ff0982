"""first_line: the one-line message of any exception, even one with no message at all."""

from __future__ import annotations

import pytest

from preprocessing.messages import first_line


class WithMessage(Exception):
    def __init__(self, message: str):
        super().__init__(f"wrapped: {message}")
        self.message = message  # as TensorFlow's OpError carries it


@pytest.mark.parametrize(
    "exc, line",
    [
        (ValueError("bad value\nmore detail"), "bad value"),
        (OSError(), "OSError"),  # str() is empty: ".strip().splitlines()[0]" raised IndexError here
        (RuntimeError("   \n  "), "RuntimeError"),
        (RuntimeError("\n\n  third line first  \n"), "third line first"),
        (WithMessage("the op's own message\ntraceback"), "the op's own message"),
        (WithMessage(""), "wrapped:"),
    ],
)
def test_first_line_of_an_exception(exc, line):
    assert first_line(exc) == line


def test_first_line_of_text():
    assert first_line("one\ntwo") == "one"
    assert first_line("") == "no message" and first_line(None) == "no message"
