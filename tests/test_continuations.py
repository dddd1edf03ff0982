"""trainer.continuations: held-out pieces cut after their opening bars, the cut's one-line refusal,
and the notes of a continuation counted from the opening's end (both encodings)."""

from __future__ import annotations

import pytest
from symusic import Note, Score, Track

from preprocessing.encodings import loader
from preprocessing.encodings.base import NoteEvent
from preprocessing.records import DataError
from trainer import continuation_measures
from trainer.continuations import (
    compare_continuations,
    continuation_plan,
    events_after,
    opening_length,
)

REFERENCE = loader.get("reference")


def remi_piece(bars: int) -> list[str]:
    """REMI tokens of ``bars`` bars, each four quarter notes climbing from C4."""
    score, track = Score(480), Track()
    for beat in range(4 * bars):
        track.notes.append(Note(beat * 480, 480, 60 + beat % 12, 80))
    score.tracks.append(track)
    return loader.get("remi").encode(score.dumps_midi())


def test_the_opening_is_whole_bars_of_each_encoding():
    piece = ["C4", "D4", "E4", "F4"] * 12  # 48 tokens: 6 bars of 8 half-quarter steps
    assert REFERENCE.bar_starts(piece) == [0, 8, 16, 24, 32, 40]
    assert opening_length(piece, REFERENCE, 4) == 32
    assert opening_length(piece, REFERENCE, 6) is None  # nothing after the opening
    remi = loader.get("remi")
    tokens = remi_piece(6)
    bar_tokens = [i for i, token in enumerate(tokens) if token == "Bar_None"]
    assert remi.bar_starts(tokens) == bar_tokens and len(bar_tokens) == 6
    cut = opening_length(tokens, remi, 4)
    assert cut == bar_tokens[4] and tokens[cut] == "Bar_None"
    # the opening plays the first 16 quarter notes, the rest starts on beat 16
    assert max(e.onset for e in remi.note_events(tokens[:cut])) == 15.0
    assert min(e.onset for e in remi.note_events(tokens)[16:]) == 16.0


def test_the_plan_cuts_each_long_piece_and_counts_the_short_ones():
    long_piece = ["C4", "E4"] * 30  # 60 tokens: 7.5 bars
    short_piece = ["G4"] * 20  # 2.5 bars
    plan, short = continuation_plan([short_piece, long_piece, long_piece], REFERENCE, 4, 20, 1)
    assert short == 1 and len(plan) == 1  # at most `limit` pieces, the first long one
    (item,) = plan
    assert item.index == 1 and item.opening == long_piece[:32] and item.real == long_piece[32:52]
    with pytest.raises(DataError) as refused:
        continuation_plan([short_piece, ["A4"] * 9], REFERENCE, 4, 20, 8)
    message = str(refused.value)
    assert "\n" not in message and "opening of 4 bars" in message and "--opening-bars" in message
    assert "longest has 3 bars" in message


def test_a_continuations_notes_count_from_the_end_of_the_opening():
    tokens = ["C4"] * 32 + ["E4", "4.7", "G4"]  # 4 bars, then a note, a chord, a note
    events = events_after(tokens, REFERENCE, 16.0)
    assert events == [
        NoteEvent(0.0, 0.5, 64),
        NoteEvent(0.5, 0.5, 64),
        NoteEvent(0.5, 0.5, 67),
        NoteEvent(1.0, 0.5, 67),
    ]


def test_a_remi_continuation_equal_to_the_real_one_overlaps_it_entirely():
    remi = loader.get("remi")
    tokens = remi_piece(8)
    plan, _ = continuation_plan([tokens], remi, 4, 500, 8)
    (entry,) = compare_continuations(plan, [plan[0].real], remi, 4)["per_piece"]
    assert entry["composed"] == entry["real"] and entry["real"]["groove_consistency"] is not None
    assert all(entry[name] == 1.0 for name in continuation_measures.OVERLAPS)
    # the pitches climb by a semitone a beat and wrap every 12 beats: of the continuation's bars
    # (pitches 64-67, 68-71, 60-63, 64-67) the last repeats the first
    assert entry["real"]["bar_repetition"] == pytest.approx(1 / 3)


def test_a_continuation_equal_to_the_real_one_overlaps_it_entirely():
    piece = (["C4", "E4", "G4", "C5", "4.7", "E4", "D4", "C4"] * 8)[:64]
    plan, _ = continuation_plan([piece], REFERENCE, 4, 100, 8)
    same = compare_continuations(plan, [plan[0].real], REFERENCE, 4)
    (entry,) = same["per_piece"]
    assert entry["composed"] == entry["real"]
    assert entry["pitch_class_histogram_overlap"] == 1.0
    # the reference's fixed rhythm: its note lengths and onset intervals say nothing, so no figure
    assert entry["note_length_histogram_overlap"] is entry["ioi_histogram_overlap"] is None
    assert entry["real"]["groove_consistency"] is None
    assert {"ioi_histogram_overlap", "groove_consistency"} <= set(same["not_applicable"])
    assert entry["composed_tokens"] == plan[0].real and entry["opening_tokens"] == 32
    # the reference has no rests: its empty-beat rate is not a number, and says why
    assert entry["real"]["empty_beat_rate"] is None and "empty_beat_rate" in same["not_applicable"]
    other = compare_continuations(plan, [["F#4"] * 32], REFERENCE, 4)["per_piece"][0]
    assert other["real"] == entry["real"] and other["pitch_class_histogram_overlap"] == 0.0
