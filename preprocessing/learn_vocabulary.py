"""``--bpe-vocab N``: where the pipeline learns a subword vocabulary, and how it applies it (REMI).

Between the parse and everything else (:class:`preprocessing.pipeline.PreprocessMidi`):

1. :class:`SampleFn`, a bounded combine: of the **training** pieces that have notes (the split by
   the key's hash, :func:`preprocessing.windowing.split_for`, so no validation piece is ever
   learned from), those with the smallest :func:`~preprocessing.windowing.key_digest`, until
   ``--bpe-sample-tokens`` base tokens (the last piece cut there). Each accumulator holds at most
   that many tokens plus one piece, on any runner, and the sample does not depend on the order the
   pieces arrive in: the same files give the same sample.
2. :func:`learn`: MidiTok's trainer on that sample, once, in one worker
   (:mod:`preprocessing.encodings.remi_bpe`), giving one :class:`Learned` value: the saved
   ``tokenizer.json`` and what the manifest records of it.
3. :class:`ApplyLearned`: every piece, training and validation, written with the learned tokens
   (the :class:`Learned` value as a side input) before windowing.

A sample that supports fewer tokens than asked (MidiTok stops merging when no pair is left) does not
stop the graph: the pieces are written with what was learned, and the last step publishes nothing
(:func:`preprocessing.writing.write_outputs` reports :attr:`Learned.problem` instead), as a run
without training windows does. This module imports MidiTok only inside :func:`learn` and
:class:`ApplyLearned`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam

from preprocessing import records, windowing
from preprocessing.parse_files import Piece

Entry = tuple[int, str, tuple[str, ...]]
"""A sampled piece: its key's digest, its key, its base tokens."""


def is_training_piece(piece: Piece, validation_fraction: float) -> bool:
    """A piece with notes that the split sends to training (whatever its length)."""
    return (
        bool(piece.tokens) and windowing.split_for(piece.key, validation_fraction) == records.TRAIN
    )


class Sample:
    """A combine's accumulator: entries sorted by digest (then key), and their tokens in all."""

    def __init__(self, entries: list[Entry] | None = None):
        self.entries = sorted(entries or [])
        self.total = sum(len(entry[2]) for entry in self.entries)

    def trim(self, budget: int) -> Sample:
        """Less the pieces that would start at or after ``budget`` tokens."""
        while self.entries and self.total - len(self.entries[-1][2]) >= budget:
            self.total -= len(self.entries.pop()[2])
        return self


class SampleFn(beam.CombineFn):
    """The pieces with the smallest key digests, up to ``budget`` base tokens in all (the last one
    cut): a bounded combine whose result does not depend on the order of its inputs."""

    def __init__(self, budget: int):
        self.budget = budget

    def create_accumulator(self) -> Sample:
        return Sample()

    def add_input(self, accumulator: Sample, piece: Piece) -> Sample:
        entry = (windowing.key_digest(piece.key), piece.key, tuple(piece.tokens))
        bisect.insort(accumulator.entries, entry)
        accumulator.total += len(entry[2])
        return accumulator.trim(self.budget)

    def merge_accumulators(self, accumulators: Iterable[Sample]) -> Sample:
        merged = Sample([entry for accumulator in accumulators for entry in accumulator.entries])
        return merged.trim(self.budget)

    def extract_output(self, accumulator: Sample) -> list[tuple[str, ...]]:
        sample, total = [], 0
        for _, _, tokens in accumulator.trim(self.budget).entries:
            sample.append(tokens[: self.budget - total])
            total += len(sample[-1])
        return sample


class Learned(NamedTuple):
    """The learned vocabulary as plain values: what the workers apply and the manifest records."""

    asked: int  # --bpe-vocab
    learned: int  # MidiTok's vocabulary size after learning, base tokens included; 0: none
    pieces: int  # the sample learned from
    tokens: int
    bound: int  # --bpe-sample-tokens
    saved_files: dict[str, bytes]  # tokenizer.json, the learned model in it
    config_hash: str
    learned_hash: str

    @property
    def problem(self) -> str | None:
        """Why the run must not publish: the sample supports fewer tokens than asked."""
        if self.learned >= self.asked:
            return None
        if self.tokens < self.bound:
            source = f"the {self.pieces:,} training pieces ({self.tokens:,} tokens)"
            remedy = "give it more pieces"
        else:
            source = (
                f"{self.pieces:,} training pieces (their first {self.tokens:,} tokens: "
                "--bpe-sample-tokens)"
            )
            remedy = "raise --bpe-sample-tokens or give it more pieces"
        return (
            f"--bpe-vocab {self.asked:,} is more than the training pieces support: MidiTok learned "
            f"{self.learned:,} tokens (base ones included) from {source}; ask for at most "
            f"{self.learned:,}, or {remedy}"
        )

    def manifest_entry(self) -> dict:
        """What ``manifest.json`` records as ``bpe_vocab``."""
        return {
            "asked": self.asked,
            "learned": self.learned,
            "sample_pieces": self.pieces,
            "sample_tokens": self.tokens,
            "sample_bound": self.bound,
            "learned_hash": self.learned_hash,
        }

    def describe(self, described: dict) -> dict:
        """The encoding's description (:func:`preprocessing.encodings.loader.describe`) with the
        learned tokenizer's hash and saved files."""
        return {**described, "config_hash": self.config_hash, "saved_files": self.saved_files}


def learn(sample: list[tuple[str, ...]], asked: int, bound: int) -> Learned:
    """MidiTok's BPE trainer on the sample (REMI's; imported here, in the one worker that learns).
    Nothing is learned from an empty sample: that run has no training window either."""
    from preprocessing.encodings.remi import RemiEncoding

    tokens = sum(len(piece) for piece in sample)
    if not sample:
        return Learned(asked, 0, 0, 0, bound, {}, "", "")
    encoding = RemiEncoding.learn(sample, asked)
    return Learned(
        asked,
        encoding.learned_size,
        len(sample),
        tokens,
        bound,
        encoding.saved_files(),
        encoding.config_hash,
        encoding.learned_hash,
    )


class LearnVocabulary(beam.PTransform):
    """Parsed pieces → one :class:`Learned`: the training pieces' bounded sample, learned from."""

    def __init__(self, asked: int, bound: int, validation_fraction: float):
        super().__init__()
        self.asked, self.bound, self.validation_fraction = asked, bound, validation_fraction

    def expand(self, pieces):
        return (
            pieces
            | "TrainingPieces" >> beam.Filter(is_training_piece, self.validation_fraction)
            | "Sample" >> beam.CombineGlobally(SampleFn(self.bound))
            | "Learn" >> beam.Map(learn, self.asked, self.bound)
        )


class ApplyLearned(beam.DoFn):
    """Each piece's base tokens → the learned vocabulary's tokens, and the base tokens those stand
    for (the vocabulary holds them too, so that sampling can always go on with a base token)."""

    def __init__(self):
        self._encoding = None
        self._hash: str | None = None

    def process(self, piece: Piece, learned: Learned) -> Iterator[Piece]:
        if not learned.learned:  # nothing learned: no training piece, the run publishes nothing
            yield piece
            return
        if self._hash != learned.learned_hash:
            from preprocessing.encodings.remi import RemiEncoding

            self._encoding = RemiEncoding.from_saved(learned.saved_files.__getitem__)
            self._hash = learned.learned_hash
        tokens = self._encoding.apply_learned(piece.tokens)
        parts = set(self._encoding.base_tokens(set(tokens)))
        yield piece._replace(
            tokens=tokens, stands_for=tuple(sorted(parts)), base_tokens=len(piece.tokens)
        )
