"""Quiet by default: the libraries' own log lines are hidden unless the user asks for them.

A new user's first screens used to be TensorFlow's start-up lines (``I0000 … cudart_stub.cc …``,
``… oneDNN custom operations are on …``, ``E0000 … failed call to cuInit …``) and the Beam workers'
(``Worker: … No semi_persistent_directory found …``, ``… Discarding unparseable args …``): none of
them is about the user's job. ``--verbose`` on every subcommand, or ``LSTM_COMPOSER_VERBOSE=1`` in
the environment (which the flag sets, so that child processes see it too), shows them again.

Where each line comes from, and what hides it:

* TensorFlow writes its start-up lines from C++ through absl logging *before* absl is initialised,
  so no setting reaches them (``TF_CPP_MIN_LOG_LEVEL`` included): :func:`import_tensorflow` imports
  it with file descriptor 2 redirected to a file and passes on every line that is not one of those
  log lines. After the import, TensorFlow's C++ logging honours ``TF_CPP_MIN_LOG_LEVEL``, set to 3
  here unless the user set it (the ``cuInit`` line is an ERROR-level one on every machine without
  a GPU driver; real failures reach the user as Python exceptions). Numerics are untouched: nothing
  here changes which kernels run (``TF_ENABLE_ONEDNN_OPTS`` is left alone).
* Beam's DirectRunner relays its worker processes' log records to the launching process; the
  workers log at ``--default_sdk_harness_log_level``, which the preprocessing job sets to ERROR on
  the DirectRunner unless the user set it (``preprocessing.direct_runner.with_local_defaults``).
  Files that fail to parse are still counted in the summary and named in ``dead_letter.jsonl``.

Imports nothing outside the standard library, so every package (and the trainer image) can use it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from types import ModuleType

VERBOSE_ENV = "LSTM_COMPOSER_VERBOSE"
QUIET_TF_LOG_LEVEL = "3"

_NATIVE_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] "
)
"""absl's C++ log format (severity, date, time, thread, file:line) and its 'not initialised' notice.
FATAL lines (``F…``) are never hidden: they say why a process is about to die."""


def verbose(env: Mapping[str, str] | None = None) -> bool:
    """True when the user asked for the libraries' log lines (``LSTM_COMPOSER_VERBOSE`` set and
    not 0)."""
    value = (os.environ if env is None else env).get(VERBOSE_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


class _VerboseAction(argparse.Action):
    """``--verbose``: sets :data:`VERBOSE_ENV` when parsed, and leaves no attribute on the
    namespace, so that every job's options stay what they were."""

    def __init__(self, option_strings, dest, help=None):  # noqa: A002 - argparse's own keyword
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        os.environ[VERBOSE_ENV] = "1"


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--verbose`` flag every subcommand shares."""
    parser.add_argument(
        "--verbose",
        action=_VerboseAction,
        help=f"also show the libraries' own log lines (TensorFlow, Apache Beam workers); same as {VERBOSE_ENV}=1",
    )


def is_native_log_line(line: str) -> bool:
    """True for a C++ log line in absl's format (INFO, WARNING, ERROR) and absl's start-up
    notice."""
    return bool(_NATIVE_LOG_LINE.match(line))


@contextlib.contextmanager
def native_logs_hidden() -> Iterator[None]:
    """While the block runs, file descriptor 2 goes to a file; afterwards every line written
    there that is not a C++ log line (:func:`is_native_log_line`) is passed on to stderr, also
    when the block fails. Does nothing when :func:`verbose`."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_native_log_line(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow() -> ModuleType:
    """Import TensorFlow without its start-up log lines (unless :func:`verbose`); returns the
    module.

    Call it before anything else imports TensorFlow: a second import prints nothing anyway.
    """
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LOG_LEVEL)
    with native_logs_hidden():
        import tensorflow

    return tensorflow
