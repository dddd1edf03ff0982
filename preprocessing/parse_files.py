"""The pipeline's parse step: MIDI files → :class:`Piece`\\ s, a file that fails → a dead letter.

The chosen encoding's parse function runs by name in budgeted child processes
(:mod:`preprocessing.budgeted_child`), so a file over ``--max-seconds-per-file`` can be stopped on
any runner, and a file that cannot be parsed becomes a dead letter (its path and the reason), never
an exception that stops the job. :class:`ParseMidi` parses with one child per DoFn instance where
the runner spreads the files itself (Dataflow: a ``Reshuffle``, dynamic work rebalancing, a DoFn
instance per worker thread), and with a pool of children fed from one queue where one process gets
every file (the local DirectRunner: :mod:`preprocessing.budgeted_pool`). This module imports
neither music21 nor MidiTok: only the children do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from preprocessing import budgeted_child, files
from preprocessing.budgeted_pool import BudgetedPool
from preprocessing.direct_runner import (
    freeze_long_lived_objects,
    in_beam_worker_process,
    leave_ctrl_c_to_the_launcher,
)
from preprocessing.encodings import midi_container, registry

LOGGER = logging.getLogger("preprocessing.pipeline")
METRICS_NAMESPACE = "lstm_composer"


class Piece(NamedTuple):
    path: str
    key: str  # path relative to the input folder: what the train/validation split hashes
    tokens: list[str]
    undeclared_tracks: int = 0  # tracks the file's header left out (every one was read)
    # --transpose K, training pieces only: what the tokens become under the shifts, and the
    # windows and (window, shift) pairs a shift cannot move (transpositions.refusals)
    moved: tuple[str, ...] = ()
    refused: tuple[tuple[str, int], ...] = ()
    # --bpe-vocab: the base tokens its learned tokens stand for, and how many base tokens it had
    stands_for: tuple[str, ...] = ()
    base_tokens: int = 0


def failure_reason(exc: budgeted_child.BudgetError, max_seconds: float) -> str:
    """The dead letter's one-line reason for a file that did not parse."""
    if isinstance(exc, budgeted_child.OverBudget):
        if exc.limit == budgeted_child.WALL:
            return (
                f"did not finish within {exc.seconds:g} s by the clock (the backstop of "
                f"--max-seconds-per-file {max_seconds:g}: the parse slept or was starved of CPU); "
                "stopped"
            )
        return (
            f"took more than --max-seconds-per-file {max_seconds:g} s of CPU time to parse; stopped"
        )
    if isinstance(exc, budgeted_child.ChildDied):
        return f"the process parsing it died: {exc}"
    # MidiParseError's message (music21's or symusic's) says what is wrong
    if isinstance(exc, budgeted_child.CallFailed):
        return exc.message if exc.type_name == "MidiParseError" else str(exc)
    return f"{type(exc).__name__}: {exc}"


class ParseMidi(beam.DoFn):
    """One MIDI file → a :class:`Piece`; a file that cannot be read or parsed in time → the dead
    letters.

    With ``processes=1`` (other runners) each instance parses in its own child process, started in
    ``setup`` and killed in ``teardown``, one file at a time. With more, the instance keeps that
    many children busy (:class:`~preprocessing.budgeted_pool.BudgetedPool`): each file is handed to
    the next free child and its piece is emitted when it is parsed, so pieces come out in the order
    they finish, up to ``processes`` files behind the input. A child that cannot start at all fails
    the job: that is the environment, not a file.
    """

    DEAD_LETTER = "dead_letter"

    def __init__(
        self,
        parts: str,
        root: str,
        max_seconds: float,
        encoding_name: str = registry.DEFAULT,
        processes: int = 1,
    ):
        if processes < 1:
            raise ValueError(f"processes must be at least 1, not {processes}")
        self.parts = parts
        self.root = root
        self.max_seconds = max_seconds
        self.processes = processes
        # by name: importing it here would load music21 or MidiTok into every Beam worker too
        self.function = registry.by_name(encoding_name).parse_function
        self.parsed = Metrics.counter(METRICS_NAMESPACE, "files_parsed")
        self.failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")
        self.tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")
        self._parse: budgeted_child.BudgetedFunction | None = None
        self._pool: BudgetedPool | None = None

    def setup(self) -> None:
        # Only where the process is Beam's own; never in a caller's process (in-memory mode).
        if in_beam_worker_process():
            freeze_long_lived_objects()
            leave_ctrl_c_to_the_launcher()
        # each child imports music21 or MidiTok while this process goes on
        if self.processes > 1:
            self._pool = BudgetedPool(self.function, self.max_seconds, self.processes)
            self._pool.start()
        else:
            self._parse = budgeted_child.BudgetedFunction(self.function, self.max_seconds)
            self._parse.start()

    def teardown(self) -> None:
        for child in (self._parse, self._pool):
            if child is not None:
                child.stop()

    def process(self, readable_file) -> Iterator:
        if self._parse is None and self._pool is None:  # a runner that skipped setup
            self.setup()
        path = readable_file.metadata.path
        if self._pool is None:
            yield self._output(path, *self.parse_one(readable_file, self._parse))
            return
        self._pool.submit(path, functools.partial(self.parse_one, readable_file))
        # at most one file waiting per child: the pool is fed in the input's order
        for done in self._pool.results(keep_in_flight=2 * self.processes - 1):
            yield self._output_of(done)

    def finish_bundle(self) -> Iterator:
        if self._pool is not None:
            for done in self._pool.results():
                output = self._output_of(done)
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(
                        output.tag, GlobalWindows.windowed_value(output.value)
                    )
                else:
                    yield GlobalWindows.windowed_value(output)

    def parse_one(
        self, readable_file, parse: budgeted_child.BudgetedFunction
    ) -> tuple[bytes, list[str] | budgeted_child.BudgetError]:
        """One file's bytes and its tokens, or why the parse gave none (a bad file: a dead
        letter). A file that cannot be read, or a child that cannot start, raises: that is the
        storage or the environment, and Beam retries or fails the bundle. The same on both paths,
        one child or a pool's thread."""
        data = readable_file.read()
        try:
            return data, parse(data, self.parts)
        except budgeted_child.BudgetError as exc:
            return data, exc

    def _output_of(self, done):
        """A pool's finished item as an output; what :meth:`parse_one` raised is raised here."""
        path, result, exc = done
        if exc is not None:
            raise exc
        return self._output(path, *result)

    def _output(self, path: str, data: bytes, tokens: list[str] | budgeted_child.BudgetError):
        """The piece, or the dead letter (a tagged output) of a file whose parse failed."""
        if isinstance(tokens, budgeted_child.BudgetError):
            self.failed.inc()
            reason = failure_reason(tokens, self.max_seconds)
            LOGGER.warning("skipping %s: %s", path, reason)
            return beam.pvalue.TaggedOutput(self.DEAD_LETTER, {"path": path, "error": reason})
        self.parsed.inc()
        self.tokens.inc(len(tokens))
        key = files.file_key(path, self.root)
        # the child read every track; the count says how many files needed that (pure, cheap)
        return Piece(path, key, tokens, undeclared_tracks=midi_container.undeclared_tracks(data))
