"""What a generated piece sounds like, in numbers: the objective measures of the literature, per
piece.

Shared by ``lstm-composer evaluate`` (:mod:`trainer.evaluate`) and the trainer's TensorBoard samples
(:class:`trainer.loop.Sampler`), under the same names (:data:`MEASURES`). Every measure is taken
from the encoding's ``note_events`` (real onsets and durations) or from the tokens, so it works for
every encoding:

* from **muspy** (pinned in ``setup.py``'s ``eval`` extra; a :class:`muspy.Music` is built from the
  notes at :data:`RESOLUTION` ticks per quarter): ``pitch_class_entropy`` (bits, of the pitch-class
  histogram), ``n_pitch_classes_used``, ``scale_consistency`` (largest share of notes in one major
  or minor scale), ``polyphony`` (mean pitches sounding where any sounds), ``pitch_range``
  (semitones), ``empty_beat_rate`` (beats with no note sounding or ending in them, muspy's
  convention);
* written here, because muspy has none: ``loop_share`` (the longest repeated loop,
  :func:`trainer.repeats.longest_loop`, as a share of the piece's tokens),
  ``distinct_token_ratio``, and :func:`histogram_overlap`, the overlap area of two pitch-class
  histograms (Yang and Lerch, "On the evaluation of generative models in music", 2018, compare sets
  by the overlap of their distributions; here the distributions are the pooled pitch-class
  histograms of the two sets).

A measure that says nothing about an encoding is reported as None with the reason
(:func:`not_applicable`): the reference encoding writes one token every 0.5 quarter and has no
rests, so no beat is ever empty. The data folder holds spans (or windows), so the validation pieces
are put back together from them (:func:`preprocessing.windowing.reassemble`) and cut into excerpts
as long as the generated pieces (:func:`excerpts`): ``docs/EVALUATION.md`` says why. Pure numpy;
muspy is imported when a measure is taken.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from preprocessing.encodings.base import Encoding, NoteEvent
from trainer.repeats import longest_loop

RESOLUTION = 12
"""muspy ticks per quarter note: exact for the reference's 0.5-quarter steps, REMI's 16ths and
triplets."""

MUSPY_MEASURES = (
    "pitch_class_entropy",
    "n_pitch_classes_used",
    "scale_consistency",
    "polyphony",
    "pitch_range",
    "empty_beat_rate",
)
TOKEN_MEASURES = ("loop_share", "distinct_token_ratio")
MEASURES = MUSPY_MEASURES + TOKEN_MEASURES
"""Per-piece measures, in table order. :data:`OVERLAP` compares the two sets as a whole."""
OVERLAP = "pitch_class_histogram_overlap"

EXTRA_HINT = "pip install 'lstm-composer[eval]'"


class MeasureError(RuntimeError):
    """The music measures cannot be taken here (muspy is missing); the message says how to fix
    it."""


def muspy_module():
    """muspy, imported now (it takes seconds), or a :class:`MeasureError` naming the extra."""
    try:
        import muspy
    except ImportError as exc:
        raise MeasureError(f"the music measures need muspy ({exc}): {EXTRA_HINT}") from None
    return muspy


def not_applicable(encoding_name: str) -> dict[str, str]:
    """Measure name → why it means nothing for this encoding (reported as None, never as a
    number)."""
    if encoding_name == "reference":
        return {
            "empty_beat_rate": "the reference encoding writes one token every 0.5 quarter note and has "
            "no rests, so no beat is ever empty (always 0)"
        }
    return {}


# --------------------------------------------------------------------------- measures muspy lacks


def pitch_class_histogram(events: Iterable[NoteEvent]) -> np.ndarray:
    """Notes per pitch class (C = 0 … B = 11), as counts."""
    counts = np.zeros(12, dtype=np.int64)
    for event in events:
        counts[event.pitch % 12] += 1
    return counts


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> float | None:
    """The overlap area of two histograms, each normalised to sum 1: ``sum(min(p, q))``.

    1 for the same distribution, 0 for distributions with no bin in common; None when either is
    empty.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    total_a, total_b = a.sum(), b.sum()
    if total_a <= 0 or total_b <= 0:
        return None
    # sum(min(a / A, b / B)) with one division, so that proportional counts give exactly 1
    return float(np.minimum(a * total_b, b * total_a).sum() / (total_a * total_b))


def loop_share(tokens: Sequence[str]) -> float:
    """The tokens the longest repeated loop covers, as a share of the piece (0 when nothing
    repeats)."""
    return longest_loop(tokens)[1] / len(tokens) if len(tokens) else 0.0


def distinct_token_ratio(tokens: Sequence[str]) -> float:
    """Distinct tokens over tokens: near 0 for a piece that keeps repeating a few tokens."""
    return len(set(tokens)) / len(tokens) if len(tokens) else 0.0


# --------------------------------------------------------------------------- one piece


def music_from_events(events: Sequence[NoteEvent]):
    """A one-track :class:`muspy.Music` of ``events`` at :data:`RESOLUTION` ticks per quarter."""
    muspy = muspy_module()
    notes = [
        muspy.Note(
            time=int(round(e.onset * RESOLUTION)),
            pitch=int(e.pitch),
            duration=max(1, int(round(e.duration * RESOLUTION))),
            velocity=64,
        )
        for e in events
    ]
    return muspy.Music(
        resolution=RESOLUTION, tracks=[muspy.Track(program=0, is_drum=False, notes=notes)]
    )


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def piece_measures(tokens: Sequence[str], encoding: Encoding) -> dict[str, float | None]:
    """Every measure of :data:`MEASURES` for one piece; None where a measure is undefined (no notes)
    or means nothing for the encoding (:func:`not_applicable`)."""
    muspy = muspy_module()
    events = encoding.note_events(tokens)
    skip = not_applicable(encoding.name)
    result: dict[str, float | None] = {}
    music = music_from_events(events) if events else None
    for name in MUSPY_MEASURES:
        result[name] = (
            None if name in skip or music is None else _number(getattr(muspy, name)(music))
        )
    result["loop_share"] = loop_share(tokens)
    result["distinct_token_ratio"] = distinct_token_ratio(tokens)
    return result


def mean_measures(per_piece: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The mean of each measure over the pieces where it is defined (None where it is nowhere)."""
    means: dict[str, float | None] = {}
    for name in MEASURES:
        values = [p[name] for p in per_piece if p.get(name) is not None]
        means[name] = float(np.mean(values)) if values else None
    return means


def compare(
    generated: Sequence[Sequence[str]], validation: Sequence[Sequence[str]], encoding: Encoding
) -> dict:
    """The measures of two sets of pieces side by side, and the overlap of their pitch-class
    histograms.

    ``{"generated": means, "validation": means, OVERLAP: float | None,
    "per_piece": [generated pieces'], "not_applicable": {name: reason}}``.
    """
    per_piece = [piece_measures(tokens, encoding) for tokens in generated]
    reference = [piece_measures(tokens, encoding) for tokens in validation]
    histogram = {
        side: sum(
            (pitch_class_histogram(encoding.note_events(t)) for t in pieces), np.zeros(12, np.int64)
        )
        for side, pieces in (("generated", generated), ("validation", validation))
    }
    return {
        "generated": mean_measures(per_piece),
        "validation": mean_measures(reference),
        OVERLAP: histogram_overlap(histogram["generated"], histogram["validation"]),
        "per_piece": per_piece,
        "not_applicable": not_applicable(encoding.name),
    }


# --------------------------------------------------------------------------- validation pieces


def excerpts(pieces: Iterable[Sequence], length: int) -> list[list]:
    """Each piece cut into consecutive excerpts of ``length`` tokens, for a comparison at equal
    length.

    A last excerpt shorter than ``length`` is kept when it has at least half of it, so a piece
    between ``length / 2`` and ``length`` tokens counts whole; shorter remnants are dropped. When no
    piece reaches ``length / 2`` at all, the pieces are returned whole (better a shorter reference
    than none).
    """
    if length < 1:
        raise ValueError("length must be at least 1")
    pieces = [list(p) for p in pieces]
    cut = [p[start : start + length] for p in pieces for start in range(0, len(p), length)]
    kept = [c for c in cut if 2 * len(c) >= length]
    return kept if kept else [p for p in pieces if p]
