"""A composed continuation beside the real one: the measures of trainer/continuation_measures.py on
hand-made pieces whose answers were worked out by hand (the comment beside each says how). Real
muspy, no mocks."""

from __future__ import annotations

import math
import random

import pytest

from preprocessing.encodings.base import NoteEvent
from trainer import continuation_measures as cm

CLASS = {name: i for i, name in enumerate(cm.NOTE_LENGTH_NAMES)}


def bar(start: float, notes, shift: int = 0) -> list[NoteEvent]:
    """``notes`` as (onset within the bar, duration, pitch), moved to the bar at ``start`` quarters
    and up ``shift`` semitones."""
    return [NoteEvent(start + onset, duration, pitch + shift) for onset, duration, pitch in notes]


MOTIF = [(0, 1, 60), (1, 1, 64), (2, 2, 67)]  # C E G: three pitches, so it can be moved
OTHER = [(0, 2, 62), (2, 1, 65), (3, 1, 60)]  # D F C: no transposition of MOTIF
NEW = [(0, 1, 67), (1, 3, 71)]


def example_piece() -> list[NoteEvent]:
    """Three bars: a C major chord and D4, each a quarter; bar 2 the same; bar 3 the same a whole
    tone up (a D major chord and E4)."""
    first = [(0, 1, 60), (0, 1, 64), (0, 1, 67), (1, 1, 62)]
    return bar(0, first) + bar(4, first) + bar(8, first, shift=2)


# --------------------------------------------------------------------------- rhythm histograms


def test_the_classes_are_yang_and_lerchs_twelve():
    assert len(cm.NOTE_LENGTH_CLASSES) == len(cm.NOTE_LENGTH_NAMES) == 12
    assert len(set(cm.NOTE_LENGTH_CLASSES)) == 12
    assert cm.NOTE_LENGTH_CLASSES[CLASS["dotted quarter"]] == 1.5
    assert cm.NOTE_LENGTH_CLASSES[CLASS["eighth triplet"]] == pytest.approx(1 / 3)


def test_a_piece_of_quarter_notes():
    events = [NoteEvent(i, 1, 60 + i % 5) for i in range(8)]
    lengths, iois = cm.note_length_histogram(events), cm.ioi_histogram(events)
    assert lengths.dtype == iois.dtype == "int64" and lengths.shape == iois.shape == (12,)
    assert lengths[CLASS["quarter"]] == 8 and lengths.sum() == 8
    assert iois[CLASS["quarter"]] == 7 and iois.sum() == 7  # 8 onsets, 7 intervals


@pytest.mark.parametrize(
    "length, name",
    [
        (4, "whole"),
        (2, "half"),
        (0.5, "eighth"),
        (0.25, "sixteenth"),
        (3, "dotted half"),
        (1.5, "dotted quarter"),
        (0.75, "dotted eighth"),
        (0.375, "dotted sixteenth"),
        (4 / 3, "half triplet"),
        (2 / 3, "quarter triplet"),
        (1 / 3, "eighth triplet"),
        (8, "whole"),  # longer than a whole note
        (0.1, "sixteenth"),  # shorter than a sixteenth
        (0, "sixteenth"),
        (0.9, "quarter"),  # log(1 / 0.9) = 0.105 < log(0.9 / 0.75) = 0.182
        (0.3, "eighth triplet"),  # log(0.333 / 0.3) = 0.105 < log(0.3 / 0.25) = 0.182
        (1.2, "half triplet"),  # log(1.333 / 1.2) = 0.105 < log(1.2 / 1) = 0.182
    ],
)
def test_each_length_lands_in_its_class(length, name):
    histogram = cm.note_length_histogram([NoteEvent(0, length, 60)])
    assert histogram.tolist() == [int(i == CLASS[name]) for i in range(12)]
    iois = cm.ioi_histogram([NoteEvent(5, 1, 60), NoteEvent(5 + length, 1, 62)])
    expected = [int(i == CLASS[name]) for i in range(12)] if length > 0 else [0] * 12
    assert iois.tolist() == expected  # a length of 0: one onset, no interval


def test_a_chord_is_one_onset():
    # C major triad at 0, again at 1, then E4 at 1.5: intervals 1 and 0.5, whatever the chords hold
    events = bar(0, [(0, 1, 60), (0, 1, 64), (0, 1, 67), (1, 0.5, 60), (1, 0.5, 67), (1.5, 1, 64)])
    iois = cm.ioi_histogram(events)
    assert iois.sum() == 2 and iois[CLASS["quarter"]] == 1 and iois[CLASS["eighth"]] == 1
    assert cm.note_length_histogram(events).sum() == 6


# --------------------------------------------------------------------------- repeated bars


def test_bar_three_repeats_bar_one():
    events = bar(0, MOTIF) + bar(4, OTHER) + bar(8, MOTIF) + bar(12, NEW)
    # bars 2, 3 and 4 follow the first; only bar 3 repeats one before it
    assert cm.bar_repetition(events) == pytest.approx(1 / 3)
    assert cm.bar_repetition_transposed(events) == pytest.approx(1 / 3)  # bar 2 is no move of 1
    shuffled = list(events)
    random.Random(0).shuffle(shuffled)
    assert cm.bar_repetition(shuffled) == pytest.approx(1 / 3)  # the order of notes is no matter
    # any earlier bar, not only the first: bar 3 repeats bar 2, bar 4 repeats bar 1
    again = bar(0, MOTIF) + bar(4, OTHER) + bar(8, OTHER) + bar(12, MOTIF)
    assert cm.bar_repetition(again) == pytest.approx(2 / 3)


def test_a_transposed_copy_counts_only_as_transposed():
    events = bar(0, MOTIF) + bar(4, MOTIF, shift=5) + bar(8, NEW)
    assert cm.bar_repetition(events) == 0.0
    assert cm.bar_repetition_transposed(events) == pytest.approx(1 / 2)  # bar 2 is bar 1 + 5
    rhythm_only = bar(0, MOTIF) + bar(4, [(0, 1, 60), (1, 1, 63), (2, 2, 67)])  # E flat: minor
    assert cm.bar_repetition_transposed(rhythm_only) == 0.0


def test_a_bar_of_one_pitch_repeats_only_exactly():
    one_pitch = [(0, 1, 60), (1, 1, 60), (2, 2, 60)]
    events = bar(0, one_pitch) + bar(4, one_pitch, shift=2) + bar(8, one_pitch)
    # moved, C C C would match every bar of the same rhythm: only bar 3 (= bar 1) repeats
    assert cm.bar_repetition_transposed(events) == pytest.approx(1 / 2)
    assert cm.bar_repetition(events) == pytest.approx(1 / 2)


def test_empty_bars_count_neither_way_and_a_held_note_stays_in_its_bar():
    held = [(0, 1, 60), (1, 1, 64), (2, 6, 67)]  # G held 6 quarters, into the next bar
    # bars 1 and 3 hold the notes, bar 2 none: one bar after the first, and it repeats
    assert cm.bar_repetition(bar(0, held) + bar(8, held)) == 1.0
    assert cm.bar_repetition(bar(0, held) + bar(8, MOTIF)) == 0.0  # durations differ: 6 vs 2
    assert cm.bar_repetition(bar(0, MOTIF)) is None  # one bar: nothing to repeat
    assert cm.bar_repetition_transposed(bar(0, MOTIF)) is None
    # onsets within the bar are compared: the motif half a beat later is another bar
    late = [(t + 0.5, d, p) for t, d, p in MOTIF]
    assert cm.bar_repetition(bar(0, MOTIF) + bar(4, late)) == 0.0


def test_bar_similarity_sees_a_motif_come_back_in_another_octave_and_texture():
    # bar 2 shares nothing with bar 1; bar 3 is bar 1 an octave up: similarity 1
    assert cm.bar_similarity(bar(0, MOTIF) + bar(4, OTHER) + bar(8, MOTIF, shift=12)) == 0.5
    # bar 2 is bar 1 with a voice added (2 more onset-pitch-class pairs): 3 shared of 5
    voices = bar(0, MOTIF) + bar(4, MOTIF) + bar(4, [(0, 4, 50), (3, 1, 55)])  # D, G
    assert cm.bar_similarity(voices) == pytest.approx(3 / 5)
    # the best earlier bar counts, not the first: bar 3 matches bar 2 only
    assert cm.bar_similarity(bar(0, MOTIF) + bar(4, OTHER) + bar(8, OTHER)) == pytest.approx(0.5)
    assert cm.bar_similarity(bar(0, MOTIF)) is None and cm.bar_similarity([]) is None
    # moved by a fifth (G B D on C E G's beats), no onset-and-pitch-class is shared
    assert cm.bar_similarity(bar(0, MOTIF) + bar(4, MOTIF, shift=7)) == 0.0


def test_the_bars_of_a_piece():
    contents = cm.bars(bar(4, OTHER) + bar(0, MOTIF))
    # 12 ticks per quarter: onsets 0, 12, 24 within the bar, durations 12, 12, 24
    assert contents == [
        ((0, 60, 12), (12, 64, 12), (24, 67, 24)),
        ((0, 62, 24), (24, 65, 12), (36, 60, 12)),
    ]


# --------------------------------------------------------------------------- one piece, one pair


def test_the_measures_of_the_example_piece():
    result = cm.continuation_measures(example_piece())
    assert list(result) == list(cm.MEASURES)
    # pitch classes C 2, D 3, E 3, F# 1, G 2, A 1 of 12 notes
    entropy = -sum(n / 12 * math.log2(n / 12) for n in (2, 3, 3, 1, 2, 1))
    assert result["pitch_class_entropy"] == pytest.approx(entropy)
    # each bar: 3 pitches for 12 ticks, 1 for 12: 48 pitch-ticks over 24 sounding ticks
    assert result["polyphony"] == pytest.approx(2.0)
    # the last note ends at tick 120: beats 0-10; a note marks its beats up to its end's, so beats
    # 0-2, 4-6 and 8-10 sound and beats 3 and 7 are empty
    assert result["empty_beat_rate"] == pytest.approx(2 / 11)
    # bars 1-3 (ticks 0-120, 48 a bar) all have onsets at positions 0 and 12: no difference
    assert result["groove_consistency"] == 1.0
    assert result["bar_repetition"] == pytest.approx(1 / 2)  # bar 2 repeats, bar 3 is moved
    assert result["bar_repetition_transposed"] == 1.0
    # bar 2 repeats bar 1 (1); bar 3, a tone up (D F# A, then E), shares no onset-and-pitch-class
    assert result["bar_similarity"] == pytest.approx(0.5)
    iois = cm.ioi_histogram(example_piece())  # onsets 0 1 4 5 8 9: intervals 1 3 1 3 1
    assert iois[CLASS["quarter"]] == 3 and iois[CLASS["dotted half"]] == 2 and iois.sum() == 5


def test_groove_consistency_sees_a_changed_rhythm_and_muspys_empty_last_bar():
    quarters = [(0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 0.5, 65)]
    halves = [(0, 2, 60), (2, 0.5, 64)]
    # bar 2 lacks the onsets at 12 and 36 of bar 1: 2 of 48 positions differ
    result = cm.continuation_measures(bar(0, quarters) + bar(4, halves))
    assert result["groove_consistency"] == pytest.approx(1 - 2 / 48)
    # a single bar ending on the bar line: muspy counts the empty bar after it (4 onsets differ)
    full = [(0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 1, 65)]
    assert cm.continuation_measures(bar(0, full))["groove_consistency"] == pytest.approx(1 - 4 / 48)
    # one bar ending inside it: one bar, nothing to compare (muspy's NaN)
    assert cm.continuation_measures(bar(0, quarters))["groove_consistency"] is None


def test_an_empty_continuation_has_no_measures():
    assert cm.continuation_measures([]) == dict.fromkeys(cm.MEASURES)
    assert cm.bar_repetition([]) is None and cm.bar_repetition_transposed([]) is None
    assert cm.note_length_histogram([]).tolist() == [0] * 12
    assert cm.ioi_histogram([]).tolist() == [0] * 12
    pair = cm.compare_pair([], example_piece())
    assert all(pair[name] is None for name in cm.OVERLAPS)
    assert pair["composed"] == dict.fromkeys(cm.MEASURES) and pair["real"]["polyphony"] == 2.0
    # one note: a pitch class and a length, but no interval
    lone = cm.compare_pair([NoteEvent(0, 1, 60)], example_piece())
    assert lone["ioi_histogram_overlap"] is None and lone["note_length_histogram_overlap"] == 1.0


def test_a_piece_beside_itself():
    piece = example_piece() + bar(12, NEW)
    pair = cm.compare_pair(piece, list(piece))
    assert set(pair) == {"composed", "real", *cm.OVERLAPS}
    assert all(pair[name] == 1.0 for name in cm.OVERLAPS)
    assert pair["composed"] == pair["real"] == cm.continuation_measures(piece)


def test_a_pair_that_differs():
    real = [NoteEvent(i, 1, 60) for i in range(8)]  # C quarters
    composed = [NoteEvent(i / 2, 0.5, 60 + 7 * (i % 2)) for i in range(8)]  # C G eighths
    pair = cm.compare_pair(composed, real)
    assert pair["pitch_class_histogram_overlap"] == pytest.approx(0.5)  # C: min(1/2, 1) = 1/2
    assert pair["note_length_histogram_overlap"] == 0.0  # eighths against quarters
    assert pair["ioi_histogram_overlap"] == 0.0
    assert pair["composed"]["polyphony"] == pair["real"]["polyphony"] == 1.0


def test_skipped_measures_and_notes_before_the_continuation():
    result = cm.continuation_measures(example_piece(), skip={"empty_beat_rate", "not_a_measure"})
    assert result["empty_beat_rate"] is None and result["polyphony"] == 2.0
    assert set(result) == set(cm.MEASURES)
    with pytest.raises(ValueError, match="before the continuation"):
        cm.compare_pair([NoteEvent(-1, 2, 60)], example_piece())


def test_summarize_takes_means_where_defined():
    pairs = [
        {
            "composed": {**dict.fromkeys(cm.MEASURES), "polyphony": 1.0, "bar_repetition": 0.5},
            "real": {**dict.fromkeys(cm.MEASURES), "polyphony": 3.0},
            **dict.fromkeys(cm.OVERLAPS),
            "ioi_histogram_overlap": 0.25,
        },
        {
            "composed": {**dict.fromkeys(cm.MEASURES), "polyphony": 2.0},
            "real": {**dict.fromkeys(cm.MEASURES), "polyphony": 5.0},
            **dict.fromkeys(cm.OVERLAPS),
            "ioi_histogram_overlap": 0.75,
        },
    ]
    summary = cm.summarize(pairs)
    assert summary["pieces"] == 2
    assert summary["composed"]["polyphony"] == 1.5 and summary["real"]["polyphony"] == 4.0
    assert summary["composed"]["bar_repetition"] == 0.5  # one piece has it: its value, not 0.25
    assert summary["real"]["bar_repetition"] is None  # nowhere defined
    assert summary["overlaps"] == {
        "pitch_class_histogram_overlap": None,
        "note_length_histogram_overlap": None,
        "ioi_histogram_overlap": 0.5,
    }
    assert cm.summarize([]) == {
        "composed": dict.fromkeys(cm.MEASURES),
        "real": dict.fromkeys(cm.MEASURES),
        "overlaps": dict.fromkeys(cm.OVERLAPS),
        "pieces": 0,
    }


def test_summarize_real_pairs():
    piece = example_piece()
    pairs = [cm.compare_pair(piece, piece), cm.compare_pair([], piece)]
    summary = cm.summarize(pairs)
    assert summary["composed"] == cm.continuation_measures(piece)  # the empty side is skipped
    assert summary["real"] == cm.continuation_measures(piece)
    assert summary["overlaps"] == dict.fromkeys(cm.OVERLAPS, 1.0)
