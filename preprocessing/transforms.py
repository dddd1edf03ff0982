"""The preprocessing job's steps after parsing: the DoFns and CombineFns that
:mod:`preprocessing.pipeline` wires up.

Each is a thin adapter around pure functions: :mod:`preprocessing.windowing` (tokens → spans, the
split, the vocabulary), :mod:`preprocessing.transpositions` (the vocabulary closed under
``--transpose``, its table), :mod:`preprocessing.examples` and :mod:`preprocessing.shards` (spans →
``tf.train.Example`` bytes → shards, the manifest), plus the Beam Metrics counters that show
progress in the Dataflow UI. The parse step itself (MIDI → :class:`Piece`, dead letters, the
per-file budget) is :mod:`preprocessing.parse_files`. This module imports neither music21 nor
MidiTok (only :class:`CloseUnderShifts` does, when ``--transpose`` asks for the encoding's own).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from preprocessing import (
    examples,
    files,
    records,
    shards,
    transpositions,
    windowing,
)
from preprocessing.direct_runner import freeze_long_lived_objects, in_beam_worker_process
from preprocessing.encodings import loader
from preprocessing.parse_files import METRICS_NAMESPACE, Piece

_FILES_MATCHED = Metrics.counter(METRICS_NAMESPACE, "files_matched")


def count_matched(metadata) -> bool:
    """Keep MIDI files only, and count them (``Metrics.counter`` resolves its container per
    call)."""
    if not files.is_midi_path(metadata.path):
        return False
    _FILES_MATCHED.inc()
    return True


class CloseUnderShifts(beam.DoFn):
    """Each piece; with ``--transpose K``, a training piece also carries the tokens its tokens
    become under every shift in -K..K (the vocabulary must hold them, so that the trainer can move
    its windows through ``transpositions.json``) and how often a shift cannot move one of its
    windows (:func:`transpositions.refusals`).

    The split comes first: the fate (:func:`windowing.piece_fate`) of the file's own tokens decides,
    so a validation piece's moves never enter the vocabulary. The encoding is imported lazily, in
    ``setup``, and only when K > 0: the moves are its own pure ``transpose_token``, the same on any
    runner.
    """

    def __init__(
        self,
        encoding_name: str,
        transpose: int,
        sequence_length: int,
        stride: int,
        validation_fraction: float,
    ):
        self.encoding_name = encoding_name
        self.shifts = transpositions.semitone_shifts(transpose)
        self.window_spec = (sequence_length, stride, validation_fraction)
        self._move = None

    def setup(self) -> None:
        if self.shifts:  # music21 or MidiTok enters this worker only for transposition
            self._move = loader.get(self.encoding_name).transpose_token
            if in_beam_worker_process():
                freeze_long_lived_objects()

    def process(self, piece: Piece) -> Iterator[Piece]:
        if (
            not self.shifts
            or windowing.piece_fate(len(piece.tokens), piece.key, *self.window_spec)
            != records.TRAIN
        ):
            yield piece
            return
        if self._move is None:  # a runner that skipped setup
            self.setup()
        moved = transpositions.moves(piece.tokens, self.shifts, self._move)
        refused = transpositions.refusals(piece.tokens, self.window_spec[0], moved)
        yield piece._replace(
            moved=tuple(sorted(transpositions.moved_tokens(moved))),
            refused=tuple(sorted(refused.items())),
        )


class MakeSpans(beam.DoFn):
    """One piece → ``(record key, serialized tf.train.Example)`` per span
    (:func:`windowing.spans`), tagged with the piece's split.

    The key (:func:`shards.record_key`) picks the span's shard and its place there.
    """

    def __init__(self, sequence_length: int, stride: int, validation_fraction: float):
        self.sequence_length = sequence_length
        self.stride = stride
        self.validation_fraction = validation_fraction
        self.counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name)
            for name in (
                *(f"{split}_{unit}" for split in records.SPLITS for unit in ("windows", "spans")),
                "pieces_empty",
                "pieces_too_short",
            )
        }
        self._index: dict[str, int] | None = None
        self._vocab_id: int | None = None

    def process(self, piece: Piece, vocab: list[str]) -> Iterator:
        if self._vocab_id != id(vocab):  # the side input is the same object for a whole bundle
            self._index = {token: i for i, token in enumerate(vocab)}
            self._vocab_id = id(vocab)
        fate = windowing.piece_fate(
            len(piece.tokens),
            piece.key,
            self.sequence_length,
            self.stride,
            self.validation_fraction,
        )
        if fate not in records.SPLITS:
            self.counters[f"pieces_{fate}"].inc()
            return
        ids = windowing.token_ids(piece.tokens, self._index)
        spans = windowing.spans(ids, self.sequence_length, self.stride)
        self.counters[f"{fate}_windows"].inc(windowing.window_count(len(ids), self.sequence_length))
        self.counters[f"{fate}_spans"].inc(len(spans))
        for index, span in enumerate(spans):
            keyed = (shards.record_key(piece.key, index), examples.encode_span(span))
            yield beam.pvalue.TaggedOutput(fate, keyed)


def transposition_table(vocab: list[str], encoding_name: str, transpose: int) -> str:
    """``transpositions.json`` for the finished vocabulary ("" without ``--transpose``); the
    encoding is imported only when there is a table to make."""
    if not transpose:
        return ""
    move = loader.get(encoding_name).transpose_token
    rows = transpositions.table(vocab, transpositions.semitone_shifts(transpose), move)
    return transpositions.table_to_json(transpose, records.vocab_hash(vocab), rows)


class VocabularyFn(beam.CombineFn):
    """The sorted distinct tokens of all pieces, in one combine (partial sets merge on each
    worker)."""

    def create_accumulator(self) -> set:
        return set()

    def add_input(self, accumulator: set, piece: Piece) -> set:
        accumulator.update(piece.tokens)
        accumulator.update(piece.moved)  # closed under the shifts of --transpose
        accumulator.update(piece.stands_for)  # the grammar can always go on with base tokens
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[set]) -> set:
        return set().union(*accumulators)

    def extract_output(self, accumulator: set) -> list[str]:
        return windowing.vocabulary(accumulator)


# --------------------------------------------------------------------------- the tally


class Tally(NamedTuple):
    """What the manifest and the dead-letter file need from the whole run, as one combinable
    value."""

    counts: Counter
    dead_letters: list[dict]
    validation_keys: int = 0  # the sum of the validation pieces' windowing.key_digest (mod 2**64)


def piece_counts(
    piece: Piece, sequence_length: int, stride: int, validation_fraction: float
) -> Counter:
    """The manifest counts one parsed piece contributes (the same classification as its spans)."""
    fate = windowing.piece_fate(
        len(piece.tokens), piece.key, sequence_length, stride, validation_fraction
    )
    counts: Counter = Counter(files_parsed=1, tokens=len(piece.tokens))
    if piece.undeclared_tracks:
        counts["headers_undercounted"] = 1
    if piece.base_tokens:
        counts["base_tokens"] = piece.base_tokens
    if fate in records.SPLITS:
        counts[f"{fate}_pieces"] = 1
        counts[f"{fate}_windows"] = windowing.window_count(len(piece.tokens), sequence_length)
        counts[f"{fate}_spans"] = windowing.window_count(len(piece.tokens), sequence_length, stride)
        counts.update(dict(piece.refused))
    else:
        counts[f"pieces_{fate}"] = 1
    return counts


def piece_tally(
    piece: Piece, sequence_length: int, stride: int, validation_fraction: float
) -> Tally:
    counts = piece_counts(piece, sequence_length, stride, validation_fraction)
    held_out = counts.get("validation_pieces", 0)
    return Tally(counts, [], windowing.key_digest(piece.key) if held_out else 0)


def dead_letter_tally(entry: dict) -> Tally:
    return Tally(Counter(files_failed=1), [entry])


class TallyFn(beam.CombineFn):
    """Adds up the counts and collects the dead letters of every file, in one combine.

    One combine instead of a count, a list and a sum, because every combine costs the DirectRunner a
    fixed share of graph and stages. Every matched MIDI file is either parsed or failed, so
    ``files_matched`` is their sum (the ``files_matched`` Beam counter, counted where the files are
    listed, must agree). With no input at all it still yields zero counts, so WriteOutputs always
    runs.
    """

    def create_accumulator(self) -> Tally:
        return Tally(Counter(), [])

    def add_input(self, accumulator: Tally, tally: Tally) -> Tally:
        accumulator.counts.update(tally.counts)
        accumulator.dead_letters.extend(tally.dead_letters)
        keys = (accumulator.validation_keys + tally.validation_keys) % 2**64
        return accumulator._replace(validation_keys=keys)

    def merge_accumulators(self, accumulators: Iterable[Tally]) -> Tally:
        total = self.create_accumulator()
        for accumulator in accumulators:
            total = self.add_input(total, accumulator)
        return total

    def extract_output(self, accumulator: Tally) -> Tally:
        noted = [
            key
            for key in (*records.TRANSPOSITION_COUNT_KEYS, *records.NOTED_COUNT_KEYS)
            if key in accumulator.counts
        ]
        always = (*records.COUNT_KEYS, *records.SPAN_COUNT_KEYS)
        counts = Counter({key: int(accumulator.counts.get(key, 0)) for key in (*always, *noted)})
        counts["files_matched"] = counts["files_parsed"] + counts["files_failed"]
        dead_letters = sorted(accumulator.dead_letters, key=lambda entry: entry["path"])
        return Tally(counts, dead_letters, accumulator.validation_keys)
