"""Bits per beat and bits per note: the cross-entropy in units that compare across encodings.

Accuracy and perplexity are per token, and a token means something else in each encoding: the
reference writes one token every half quarter note (a note or a chord) over a vocabulary of about
1,900; REMI writes bars, positions, pitches and durations over about 120, and a learned (BPE)
vocabulary merges several of those into one. What they share is the music. So the validation
loss, the mean cross-entropy per token in nats, is turned into bits (divided by ln 2) and
multiplied by the validation pieces' tokens per beat (quarter note) and tokens per note:

    bits per beat = val_loss / ln 2 × tokens / quarter notes
    bits per note = val_loss / ln 2 × tokens / notes

An encoding that spends more tokens on the same music must predict each of them better to score
the same. The tokens, quarter notes and notes are counted on the same validation pieces, by the
encoding's own decoder (:meth:`~preprocessing.encodings.base.Encoding.note_events`): a piece lasts
until its last note ends (its onset plus its duration, in quarter notes, from the piece's start),
and every sounding note counts once (a chord of three pitches is three notes). The reference's
pieces therefore last exactly half a quarter note per token; REMI's as long as MidiTok's decoder
plays them. ``docs/EVALUATION.md`` says which tokens the loss is taken over. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from preprocessing.encodings.base import Encoding

LN2 = math.log(2.0)
BITS_PER_BEAT = "val_bits_per_beat"
BITS_PER_NOTE = "val_bits_per_note"
RATE_RECORDS = 2_000
"""The trainer counts the rate on the validation pieces put back together from at most this many
records (spans), enough for a rate and cheap to decode on a large collection."""


@dataclass(frozen=True)
class TokenRate:
    """How many tokens an encoding spends on a set of pieces: per quarter note and per note."""

    pieces: int
    tokens: int
    quarter_notes: float
    notes: int

    @property
    def tokens_per_beat(self) -> float | None:
        return self.tokens / self.quarter_notes if self.quarter_notes > 0 else None

    @property
    def tokens_per_note(self) -> float | None:
        return self.tokens / self.notes if self.notes > 0 else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            **asdict(self),
            "tokens_per_beat": self.tokens_per_beat,
            "tokens_per_note": self.tokens_per_note,
        }


def piece_length(tokens: Sequence[str], encoding: Encoding) -> tuple[float, int]:
    """``(quarter notes, notes)`` of one piece as its encoding decodes it: it lasts until its last
    note ends; every sounding note counts."""
    events = encoding.note_events(tokens)
    if not events:
        return 0.0, 0
    return max(event.onset + event.duration for event in events), len(events)


def token_rate(pieces: Iterable[Sequence[str]], encoding: Encoding) -> TokenRate:
    """The tokens, quarter notes and notes of ``pieces`` (token strings), summed."""
    counted = [(len(piece), *piece_length(piece, encoding)) for piece in pieces]
    return TokenRate(
        pieces=len(counted),
        tokens=sum(tokens for tokens, _, _ in counted),
        quarter_notes=sum((quarters for _, quarters, _ in counted), 0.0),
        notes=sum(notes for _, _, notes in counted),
    )


def bits_figures(loss_nats: float, rate: TokenRate | None) -> dict[str, float]:
    """:data:`BITS_PER_BEAT` and :data:`BITS_PER_NOTE` of a mean cross-entropy per token (nats);
    empty where the rate is unknown or the pieces hold no notes."""
    if rate is None or not math.isfinite(loss_nats):
        return {}
    figures = {}
    for name, per in ((BITS_PER_BEAT, rate.tokens_per_beat), (BITS_PER_NOTE, rate.tokens_per_note)):
        if per is not None:
            figures[name] = loss_nats / LN2 * per
    return figures


def with_bits(metrics: Mapping[str, float], rate: TokenRate | None) -> dict[str, float]:
    """``metrics`` with the bits figures of its ``val_loss`` (unchanged when it has none)."""
    if "val_loss" not in metrics:
        return dict(metrics)
    return {**metrics, **bits_figures(metrics["val_loss"], rate)}
