"""A composed continuation beside the real one, piece by piece: objective measures of both.

A continuation starts from a held-out piece's own opening (the primer) and is composed on from
there; the piece's real continuation is what its composer wrote after the same opening. Both are
:class:`~preprocessing.encodings.base.NoteEvent` lists whose times are quarter notes from the first
beat after the opening, in bars of :data:`BEATS_PER_BAR` quarters (4/4). Each pair is measured
**per piece**: both sides grow from the same opening, so they share its key, metre and texture, and
what differs between them is the model, not the choice of piece. Pooling every composed note
against every real note, as :func:`trainer.measures.compare` does for free composition, would mix
the keys of all the pieces, and a model that kept each piece in its own key would score no better
than one that wandered off into another.

The distributions are those of Yang and Lerch ("On the evaluation of generative models in music",
2018), compared by their overlap area (:func:`trainer.measures.histogram_overlap`, without their
kernel-density step) in :data:`OVERLAPS`:

* the **pitch-class histogram** (:func:`trainer.measures.pitch_class_histogram`, notes counted):
  does the continuation stay in the piece's key and use its scale degrees as often;
* the **note-length histogram** (:func:`note_length_histogram`, their 12 classes,
  :data:`NOTE_LENGTH_CLASSES`) and the **inter-onset intervals** (:func:`ioi_histogram`, in the
  same classes): does it keep the piece's rhythm, its note values and how often notes begin.

Each side also gets the per-piece measures of :data:`MEASURES`:

* from muspy (on :func:`trainer.measures.music_from_events`): ``pitch_class_entropy`` (bits),
  ``polyphony`` (mean pitches sounding where any sounds: the texture), ``empty_beat_rate`` (muspy's
  convention: a beat where a note ends is not empty) and ``groove_consistency`` (Wu and Yang, 2020:
  1 minus the mean Hamming distance between the onset patterns of neighbouring bars; muspy counts
  bars up to the last note's end, so a piece that ends on a bar line gets an empty last bar);
* written here: :func:`bar_repetition`, the share of bars that repeat an earlier bar note for note,
  and :func:`bar_repetition_transposed`, the same with a bar moved by whole semitones counting too.
  Real music returns to earlier bars (written-out repeats, refrains, sequences); a model that
  wanders never does, one stuck in a loop always does. The transposed one adds sequences and
  transposed motifs: the two differ by how much of the repetition is moved material. And
  :func:`bar_similarity`, softer: how much of each bar's onsets and pitch classes an earlier bar
  already had, which sees a motif come back inside a polyphonic texture.

A measure that is undefined (no notes, one bar, muspy's NaN) is None, never a number.
:func:`summarize` takes the mean of each over the pieces where it is defined. Pure numpy; muspy is
imported when a measure is taken (:class:`trainer.measures.MeasureError` without it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from preprocessing.encodings.base import NoteEvent
from trainer.measures import (
    RESOLUTION,
    _number,
    histogram_overlap,
    music_from_events,
    muspy_module,
    pitch_class_histogram,
)

BEATS_PER_BAR = 4
"""Quarter notes per bar: continuations are measured in 4/4."""
BAR_TICKS = RESOLUTION * BEATS_PER_BAR
"""Ticks per bar at :data:`trainer.measures.RESOLUTION` ticks per quarter."""

NOTE_LENGTH_NAMES = (
    "whole",
    "half",
    "quarter",
    "eighth",
    "sixteenth",
    "dotted half",
    "dotted quarter",
    "dotted eighth",
    "dotted sixteenth",
    "half triplet",
    "quarter triplet",
    "eighth triplet",
)
NOTE_LENGTH_CLASSES = (4.0, 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 0.75, 0.375, 4 / 3, 2 / 3, 1 / 3)
"""Yang and Lerch's 12 note-length classes, in their order (:data:`NOTE_LENGTH_NAMES`), in quarter
notes. A length counts in the nearest class by log ratio (so 0.9 is a quarter, not a dotted
eighth); anything longer than a whole note is a whole note, anything shorter than a sixteenth a
sixteenth."""
_LOG_CLASSES = np.log(np.array(NOTE_LENGTH_CLASSES))
_SHORTEST = 1e-6  # quarters: a length of 0 (or less) counts as the shortest class

MUSPY_MEASURES = ("pitch_class_entropy", "polyphony", "empty_beat_rate", "groove_consistency")
REPETITION_MEASURES = ("bar_repetition", "bar_repetition_transposed", "bar_similarity")
MEASURES = MUSPY_MEASURES + REPETITION_MEASURES
"""Per-piece measures of each side, in table order."""
OVERLAPS = (
    "pitch_class_histogram_overlap",
    "note_length_histogram_overlap",
    "ioi_histogram_overlap",
)
"""Per-pair overlaps of the two sides' histograms: 1 for the same distribution, 0 for none in
common."""


def _checked(events: Iterable[NoteEvent]) -> list[NoteEvent]:
    events = list(events)
    early = [e for e in events if e.onset < 0]
    if early:
        raise ValueError(
            f"{len(early)} note(s) begin before the continuation (first: {early[0]}): pass only "
            "the notes from onset 0 on"
        )
    return events


# --------------------------------------------------------------------------- rhythm histograms


def length_classes(lengths: Iterable[float]) -> np.ndarray:
    """The index in :data:`NOTE_LENGTH_CLASSES` of each length (quarters): the nearest by log
    ratio."""
    logs = np.log(np.maximum(np.fromiter(lengths, np.float64), _SHORTEST))
    return np.abs(logs[:, None] - _LOG_CLASSES[None, :]).argmin(axis=1)


def _length_histogram(lengths: Iterable[float]) -> np.ndarray:
    classes = length_classes(lengths)
    return np.bincount(classes, minlength=len(NOTE_LENGTH_CLASSES)).astype(np.int64)


def note_length_histogram(events: Iterable[NoteEvent]) -> np.ndarray:
    """Notes per note-length class (:data:`NOTE_LENGTH_CLASSES`), as counts."""
    return _length_histogram(e.duration for e in events)


def ioi_histogram(events: Iterable[NoteEvent]) -> np.ndarray:
    """Inter-onset intervals per note-length class, as counts: the time from each onset to the next
    distinct one, so the notes of a chord begin one interval, not one each."""
    onsets = np.unique(np.round(np.fromiter((e.onset for e in events), np.float64), 6))
    return _length_histogram(np.diff(onsets))


# --------------------------------------------------------------------------- repeated bars

Bar = tuple[tuple[int, int, int], ...]
"""A bar's notes as a sorted multiset of (onset within the bar, pitch, duration), ticks."""


def bars(events: Iterable[NoteEvent]) -> list[Bar]:
    """The piece's non-empty bars in order, each as its notes (:data:`Bar`). A note belongs to the
    bar its onset is in, with its whole duration (held across the bar line or not)."""
    notes: dict[int, list[tuple[int, int, int]]] = {}
    for event in events:
        bar, position = divmod(int(round(event.onset * RESOLUTION)), BAR_TICKS)
        duration = max(1, int(round(event.duration * RESOLUTION)))  # as music_from_events
        notes.setdefault(bar, []).append((position, int(event.pitch), duration))
    return [tuple(sorted(notes[bar])) for bar in sorted(notes)]


def _repeat_share(contents: Sequence[Bar]) -> float | None:
    """The share of the bars after the first that equal an earlier one; None for fewer than 2."""
    if len(contents) < 2:
        return None
    seen = {contents[0]}
    repeats = 0
    for bar in contents[1:]:
        repeats += bar in seen
        seen.add(bar)
    return repeats / (len(contents) - 1)


def bar_repetition(events: Iterable[NoteEvent]) -> float | None:
    """The share of the non-empty bars after the first non-empty one whose notes repeat an earlier
    bar's exactly (same onsets within the bar, pitches and durations); None for fewer than 2
    non-empty bars. Empty bars count neither way."""
    return _repeat_share(bars(_checked(events)))


def _moved_to_zero(bar: Bar) -> Bar:
    """The bar moved so its lowest pitch is 0; a bar of one pitch stays where it is, since moved it
    would equal every bar of the same rhythm: its repeat says nothing of pitch."""
    low, high = min(p for _, p, _ in bar), max(p for _, p, _ in bar)
    return bar if low == high else tuple((t, p - low, d) for t, p, d in bar)


def bar_repetition_transposed(events: Iterable[NoteEvent]) -> float | None:
    """:func:`bar_repetition`, with a bar that equals an earlier bar moved by a whole number of
    semitones counted as a repeat too (sequences, transposed motifs). A bar of a single pitch
    counts only when repeated exactly (moved, it would match any bar of the same rhythm)."""
    return _repeat_share([_moved_to_zero(bar) for bar in bars(_checked(events))])


def bar_similarity(events: Iterable[NoteEvent]) -> float | None:
    """The mean, over the non-empty bars after the first, of each bar's largest similarity to an
    earlier bar: the Jaccard index of their sets of (onset within the bar, pitch class). 1 for a
    bar that repeats an earlier one in any octave (durations aside), 0 for one that shares no
    onset-and-pitch-class with any bar before it; None for fewer than 2 non-empty bars.

    The exact measures find nothing in polyphonic music, where a whole texture seldom comes back
    note for note (none of the embedded madrigals' continuations repeats a bar); this one sees a
    returning motif or cadence pattern in a bar that also holds other voices.
    """
    contents = [frozenset((t, p % 12) for t, p, _ in bar) for bar in bars(_checked(events))]
    if len(contents) < 2:
        return None
    best = [
        max(len(bar & earlier) / len(bar | earlier) for earlier in contents[:index])
        for index, bar in enumerate(contents)
        if index
    ]
    return float(np.mean(best))


# --------------------------------------------------------------------------- one piece, one pair


def continuation_measures(
    events: Iterable[NoteEvent], skip: Collection[str] = ()
) -> dict[str, float | None]:
    """Every measure of :data:`MEASURES` for one side of a pair; None where one is undefined (no
    notes, a single bar, muspy's NaN) or named in ``skip`` (e.g. the keys of
    :func:`trainer.measures.not_applicable` for the encoding)."""
    muspy = muspy_module()
    events = _checked(events)
    result: dict[str, float | None] = dict.fromkeys(MEASURES)
    if events:
        music = music_from_events(events)
        result["pitch_class_entropy"] = _number(muspy.pitch_class_entropy(music))
        result["polyphony"] = _number(muspy.polyphony(music))
        result["empty_beat_rate"] = _number(muspy.empty_beat_rate(music))
        result["groove_consistency"] = _number(muspy.groove_consistency(music, BAR_TICKS))
        result["bar_repetition"] = bar_repetition(events)
        result["bar_repetition_transposed"] = bar_repetition_transposed(events)
        result["bar_similarity"] = bar_similarity(events)
    for name in skip:
        if name in result:
            result[name] = None
    return result


_HISTOGRAMS = dict(
    zip(OVERLAPS, (pitch_class_histogram, note_length_histogram, ioi_histogram), strict=True)
)


def compare_pair(
    composed: Iterable[NoteEvent], real: Iterable[NoteEvent], skip: Collection[str] = ()
) -> dict:
    """One held-out piece: the measures of its composed and its real continuation, and the overlap
    of each histogram of the two (None where either side's histogram is empty).

    ``{"composed": measures, "real": measures, <each of OVERLAPS>: float | None}``.
    """
    composed, real = _checked(composed), _checked(real)
    result: dict = {
        "composed": continuation_measures(composed, skip),
        "real": continuation_measures(real, skip),
    }
    for name, histogram in _HISTOGRAMS.items():
        result[name] = histogram_overlap(histogram(composed), histogram(real))
    return result


def _means(rows: Sequence[Mapping], names: Sequence[str]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for name in names:
        values = [row[name] for row in rows if row.get(name) is not None]
        means[name] = float(np.mean(values)) if values else None
    return means


def summarize(pairs: Iterable[Mapping]) -> dict:
    """The mean of each measure and overlap over the pairs (:func:`compare_pair`) where it is
    defined; None where it is nowhere.

    ``{"composed": {measure: mean}, "real": {measure: mean}, "overlaps": {name: mean},
    "pieces": number of pairs}``.
    """
    pairs = list(pairs)
    return {
        "composed": _means([p["composed"] for p in pairs], MEASURES),
        "real": _means([p["real"] for p in pairs], MEASURES),
        "overlaps": _means(pairs, OVERLAPS),
        "pieces": len(pairs),
    }
