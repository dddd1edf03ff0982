"""The music measures, sampling filters, piano roll, audio and in-epoch progress, on hand-made cases
whose answers were worked out by hand (the comment beside each says how)."""

from __future__ import annotations

import io
import math
import random
import sys
import wave
from collections import Counter

import numpy as np
import pytest

from preprocessing import windowing
from preprocessing.encodings import loader
from preprocessing.encodings.base import NoteEvent
from trainer import audio, measures, plots, repeats, sampling, summary
from trainer.progress import EpochProgress

REF = loader.get("reference")


# --------------------------------------------------------------------------- the longest loop


@pytest.mark.parametrize(
    "tokens, expected",
    [
        ("ABCD", (0, 0)),  # nothing repeats
        ("ABAB", (2, 4)),  # AB twice
        ("ABA", (0, 0)),  # A B A is not a pattern played twice
        ("AAB", (1, 2)),  # A twice
        ("ABCABCAB", (3, 8)),  # ABC twice, and the next copy begun: the loop covers all 8
        ("ABCABDAB", (0, 0)),  # ABC then ABD: no copy is complete
        ("AAAXYXYXY", (2, 6)),  # AAA covers 3, XY three times covers 6: the longer stretch wins
        ("AAAA", (1, 4)),  # A four times (AA twice covers the same 4: the shorter pattern is kept)
        ("C" + "ABE" * 3 + "D", (3, 9)),
    ],
)
def test_longest_loop_hand_cases(tokens, expected):
    assert repeats.longest_loop(list(tokens)) == expected


def plain_longest_loop(tokens):
    """The definition, as written before the fast search: every period at every position."""
    best = (0, 0)
    for period in range(1, len(tokens) // 2 + 1):
        run = 0
        for i in range(len(tokens) - period):
            run = run + 1 if tokens[i] == tokens[i + period] else 0
            if run >= period and run + period > best[1]:
                best = (period, run + period)
    return best


def test_the_fast_loop_search_is_the_plain_one_on_random_pieces():
    rng = np.random.default_rng(7)
    for _ in range(400):
        alphabet = list("ABCDE")[: rng.integers(1, 6)]
        tokens = [str(t) for t in rng.choice(alphabet, size=rng.integers(0, 80))]
        if rng.random() < 0.5:  # a loop inside noise
            pattern = [str(t) for t in rng.choice(list("ABCDEFG"), size=rng.integers(1, 7))]
            cut = int(rng.integers(0, len(tokens) + 1))
            tokens = tokens[:cut] + pattern * int(rng.integers(2, 5)) + tokens[cut:]
        assert repeats.longest_loop(tokens) == plain_longest_loop(tokens), tokens


def test_a_long_piece_gets_its_loop_found():
    """100,000 tokens (generate --length 100000): a plain search would take minutes."""
    rng = np.random.default_rng(3)
    noise = [f"N{i}" for i in rng.integers(0, 50, size=100_000)]
    pattern = [f"P{i}" for i in range(7)]
    tokens = noise[:40_000] + pattern * 300 + noise[40_000:]
    period, covered = repeats.longest_loop(tokens)
    assert (period, covered) == (7, 2_100)
    assert repeats.longest_loop(["E4"] * 50_000) == (1, 50_000)


def test_loop_share_and_distinct_token_ratio():
    assert measures.loop_share(list("C" + "ABE" * 3 + "D")) == pytest.approx(9 / 11)
    assert measures.loop_share(["E4"] * 6) == 1.0
    assert measures.loop_share(["A4", "B4"]) == 0.0 and measures.loop_share([]) == 0.0
    assert measures.distinct_token_ratio(["C4", "C4", "E4", "G4"]) == 0.75
    assert measures.distinct_token_ratio([]) == 0.0
    described = summary.summarize(list("C" + "ABE" * 3 + "D"), _LetterEncoding())
    assert described.loop_share == pytest.approx(9 / 11)
    assert "81.8 % of the piece" in described.lines()[2]


class _LetterEncoding:
    """Single letters as notes (A = 57, …) for summaries of letter strings."""

    name = "letters"

    def note_events(self, tokens):
        return [NoteEvent(i * 0.5, 0.5, 50 + ord(t) % 20) for i, t in enumerate(tokens)]


# --------------------------------------------------------------------------- histograms


def test_pitch_class_histogram_and_its_overlap():
    events = [NoteEvent(0, 1, p) for p in (60, 72, 64, 67, 61)]
    assert measures.pitch_class_histogram(events).tolist() == [2, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    a, b = np.zeros(12), np.zeros(12)
    a[[0, 1]] = 2, 2  # (0.5, 0.5)
    b[[0, 1]] = 1, 3  # (0.25, 0.75): overlap min(.5,.25) + min(.5,.75) = 0.75
    assert measures.histogram_overlap(a, b) == pytest.approx(0.75)
    assert measures.histogram_overlap(a, 10 * a) == pytest.approx(1.0)
    c = np.zeros(12)
    c[5] = 1
    assert measures.histogram_overlap(a, c) == 0.0
    assert measures.histogram_overlap(a, np.zeros(12)) is None


# ---------------------------------------------------------------------- muspy's measures, one piece


def test_piece_measures_of_a_reference_piece():
    # C4 E4 G4 one every 0.5 quarter, then the C major triad: pitch classes C, E, G twice each.
    result = measures.piece_measures(["C4", "E4", "G4", "0.4.7"], REF)
    assert set(result) == set(measures.MEASURES)
    assert result["pitch_class_entropy"] == pytest.approx(math.log2(3))
    assert result["n_pitch_classes_used"] == 3
    assert result["scale_consistency"] == 1.0  # all in C major
    # 12 ticks per quarter: three single notes of 6 ticks, then 3 pitches for 6 ticks: 36 / 24
    assert result["polyphony"] == pytest.approx(1.5)
    assert result["pitch_range"] == 7  # C4 (60) to G4 (67)
    assert result["empty_beat_rate"] is None  # n/a for the reference encoding, not a number
    assert "no rests" in measures.not_applicable("reference")["empty_beat_rate"]
    assert result["loop_share"] == 0.0 and result["distinct_token_ratio"] == 1.0


def test_scale_consistency_and_entropy_of_a_chromatic_run():
    result = measures.piece_measures(["C4", "C#4", "D4", "E4"], REF)
    assert result["pitch_class_entropy"] == pytest.approx(2.0)  # four classes, once each
    # No major or minor scale holds three chromatic neighbours: the best hold 3 of the 4 notes.
    assert result["scale_consistency"] == pytest.approx(0.75)


def test_empty_beat_rate_of_a_remi_piece():
    from preprocessing.encodings import remi

    # C4 on beat 0 and D4 on beat 2 (position 8 of 16), each half a beat: beat 1 is silent.
    tokens = [
        "Bar_None",
        "Position_0",
        "Pitch_60",
        "Duration_0.2.4",
        "Position_8",
        "Pitch_62",
        "Duration_0.2.4",
    ]
    encoding = remi.RemiEncoding()
    assert [(e.onset, e.duration, e.pitch) for e in encoding.note_events(tokens)] == [
        (0, 0.5, 60),
        (2, 0.5, 62),
    ]
    result = measures.piece_measures(tokens, encoding)
    # muspy counts the beats up to the last note's end (tick 30 of 12 per beat: beats 0, 1, 2), one
    # empty
    assert result["empty_beat_rate"] == pytest.approx(1 / 3)
    assert (
        result["polyphony"] == 1.0
        and result["pitch_range"] == 2
        and result["n_pitch_classes_used"] == 2
    )
    assert result["pitch_class_entropy"] == pytest.approx(1.0)


def test_a_piece_without_notes_has_no_pitch_measures():
    result = measures.piece_measures([], REF)
    assert result["pitch_class_entropy"] is None and result["polyphony"] is None
    assert result["loop_share"] == 0.0


def test_compare_two_sets():
    result = measures.compare([["C4", "E4"], ["C4", "E4", "G4", "C4"]], [["C4", "D4"]], REF)
    # generated pitch classes C:3 E:2 G:1 (1/2, 1/3, 1/6); validation C:1 D:1: overlap min(1/2, 1/2)
    # = 0.5
    assert result[measures.OVERLAP] == pytest.approx(0.5)
    assert result["generated"]["n_pitch_classes_used"] == pytest.approx((2 + 3) / 2)
    assert result["validation"]["pitch_range"] == 2
    assert result["generated"]["empty_beat_rate"] is None and len(result["per_piece"]) == 2
    assert measures.mean_measures([])["polyphony"] is None


def test_missing_muspy_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "muspy", None)  # what an environment without the extra gives
    with pytest.raises(measures.MeasureError, match=r"lstm-composer\[eval\]"):
        measures.piece_measures(["C4"], REF)


# --------------------------------------------------------------------------- validation pieces


def windows_of(pieces, length, stride=1):
    from preprocessing.windowing import windows

    pairs = [w for piece in pieces for w in windows(piece, length, stride)]
    random.Random(0).shuffle(pairs)  # shards hold them in any order
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def reassemble(inputs, targets, stride: int = 1) -> list[list[int]]:
    """Format 2's windows ``(inputs, target)`` at ``stride`` chained back into pieces."""
    rows = [list(x) + [int(t)] for x, t in zip(np.asarray(inputs).tolist(), targets)]
    return windowing.reassemble(rows, np.shape(inputs)[1] + 1 - stride)


def test_reassemble_puts_shuffled_windows_back_into_their_pieces():
    pieces = [list(range(10)), list(range(20, 27))]
    assert sorted(reassemble(*windows_of(pieces, 3))) == pieces


def test_reassemble_at_a_stride_loses_only_the_tail_of_stored_windows():
    # 11 tokens, windows of 3 + target starting at 0, 2, 4, 6: tokens 0..9 are covered, 10 is not.
    assert reassemble(*windows_of([list(range(11))], 3, stride=2), stride=2) == [list(range(10))]
    # stride 5 > 3: windows do not overlap, each stays alone
    alone = reassemble(*windows_of([list(range(12))], 3, stride=5), stride=5)
    assert sorted(alone) == [[0, 1, 2, 3], [5, 6, 7, 8]]
    # spans at any stride keep the tail: token 10 comes back
    assert windowing.reassemble(windowing.spans(list(range(11)), 3, 5), 3) == [list(range(11))]


def test_reassemble_a_piece_that_is_one_loop():
    assert reassemble(*windows_of([[1] * 10], 3)) == [[1] * 10]
    assert reassemble(*windows_of([[1, 2, 3] * 3], 2)) == [[1, 2, 3] * 3]
    assert windowing.reassemble(windowing.spans([1, 2, 3] * 5, 2, 4), 2) == [[1, 2, 3] * 5]
    assert reassemble(np.zeros((0, 3)), np.zeros(0)) == []


def test_reassemble_the_pipelines_validation_spans(records_dir):
    """On a real pipeline output, whose shards order spans by a hash: the stretches that come
    back hold exactly the validation pieces' windows, each once. (These patterned pieces repeat
    more than the spans' overlap, so the chaining may take either branch: the stretches need not
    be the pieces.)"""
    from conftest import patterned_tokens

    from preprocessing import records
    from trainer import data as data_lib

    data = data_lib.load(str(records_dir))
    pieces = data_lib.pieces(data, records.VALIDATION)
    expected = [
        patterned_tokens(seed=100 + i, length=120)
        for i in range(12)
        if windowing.split_for(f"tune_{i:02d}.mid", 0.25) == records.VALIDATION
    ]
    length = data.sequence_length + 1

    def windows(sequences) -> Counter:
        return Counter(
            tuple(seq[i : i + length]) for seq in sequences for i in range(len(seq) - length + 1)
        )

    assert expected and windows([[data.vocab[i] for i in p] for p in pieces]) == windows(expected)
    assert sum(map(len, pieces)) >= sum(map(len, expected))


def test_excerpts_cut_pieces_to_the_generated_length():
    pieces = [list(range(10)), list(range(4)), list(range(2))]
    assert [len(e) for e in measures.excerpts(pieces, 4)] == [4, 4, 2, 4, 2]
    # a 2-token remnant of 5 is dropped
    assert [len(e) for e in measures.excerpts(pieces, 5)] == [5, 5, 4]
    assert measures.excerpts([[1], [2, 3]], 10) == [[1], [2, 3]]  # nothing reaches 5: whole pieces
    with pytest.raises(ValueError):
        measures.excerpts(pieces, 0)


# --------------------------------------------------------------------------- sampling filters


P = np.array([0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, [0.5, 0.3, 0.15, 0.05]),
        ({"top_p": 1.0}, [0.5, 0.3, 0.15, 0.05]),
        ({"top_p": 0.7}, [0.625, 0.375, 0, 0]),  # 0.5 < 0.7, then 0.8: the first two, renormalised
        ({"top_p": 0.5}, [1, 0, 0, 0]),  # the first already holds 0.5
        ({"top_p": 0.9}, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        # after top-k: 0.526, 0.842 < 0.9
        ({"top_k": 3, "top_p": 0.9}, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        # p² = .25 .09 .0225 .0025
        ({"temperature": 0.5, "top_p": 0.9}, [0.25 / 0.34, 0.09 / 0.34, 0, 0]),
        ({"allowed": [False, True, True, True]}, [0, 0.6, 0.3, 0.1]),
        # k beyond the allowed
        ({"allowed": [False, False, True, True], "top_k": 3}, [0, 0, 0.75, 0.25]),
        # .77 < .8
        ({"allowed": [True, False, True, False], "top_p": 0.8}, [0.5 / 0.65, 0, 0.15 / 0.65, 0]),
    ],
)
def test_distribution_hand_cases(kwargs, expected):
    np.testing.assert_allclose(sampling.distribution(P, **kwargs), expected, atol=1e-12)


def test_sample_next_with_top_p_and_a_mask():
    rng = np.random.default_rng(0)
    draws = [sampling.sample_next(P, 1.0, None, rng, top_p=0.7) for _ in range(400)]
    assert set(draws) == {0, 1} and 200 < draws.count(0) < 300  # 0.625 of 400 = 250
    # a masked id is never drawn, however likely the network finds it (no 1e-30 floor for it)
    certain = np.array([1.0, 0.0, 0.0])
    masked = [
        sampling.sample_next(certain, 1.0, None, rng, allowed=[False, True, True])
        for _ in range(200)
    ]
    assert set(masked) == {1, 2}
    # argmax among allowed
    assert sampling.sample_next(P, 0.0, None, rng, allowed=[False, True, True, True]) == 1
    for bad in ({"top_p": 0.0}, {"top_p": 1.5}, {"allowed": [False] * 4}, {"allowed": [True] * 3}):
        with pytest.raises(ValueError):
            sampling.sample_next(P, 1.0, None, rng, **bad)


def test_the_same_seed_draws_the_same_tokens_as_before_top_p():
    """Without top-p or a mask the draws are those of the earlier sampler (seeded runs repeat)."""

    def earlier(p, temperature, top_k, rng):
        logits = np.log(np.maximum(p, 1e-30)) / temperature
        if top_k is not None and 0 < top_k < logits.size:
            cutoff = np.partition(logits, -top_k)[-top_k]
            logits = np.where(logits >= cutoff, logits, -np.inf)
        logits -= logits.max()
        weights = np.exp(logits)
        return int(rng.choice(weights.size, p=weights / weights.sum()))

    a, b = np.random.default_rng(5), np.random.default_rng(5)
    probs = np.random.default_rng(1).dirichlet(np.ones(30), size=50)
    assert [sampling.sample_next(p, 0.8, 7, a) for p in probs] == [
        earlier(p, 0.8, 7, b) for p in probs
    ]


# --------------------------------------------------------------------------- audio


def test_wav_reads_back_with_the_expected_duration():
    events = [NoteEvent(0, 1, 60), NoteEvent(1, 2, 64)]  # ends at 3 quarters = 1.5 s at 120 bpm
    data = audio.wav_bytes(audio.synthesize(events))
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, audio.SAMPLE_RATE)
        assert w.getnframes() == round((1.5 + audio.TAIL_SECONDS) * audio.SAMPLE_RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(pcm).max() > 10_000  # normalised to 0.8 of full scale, not silent


def test_synthesis_follows_the_notes_durations():
    rate = audio.SAMPLE_RATE

    def rms_between(events, start_s, end_s):
        wave_ = audio.synthesize(events + [NoteEvent(4, 0.5, 72)])  # same length and peak scale
        return float(np.sqrt(np.mean(wave_[int(start_s * rate) : int(end_s * rate)] ** 2)))

    # a whole note (4 quarters = 2 s) still sounds at 1.0-1.5 s; an eighth note (0.25 s + release)
    # does not
    assert rms_between([NoteEvent(0, 4, 60)], 1.0, 1.5) > 0.01
    assert rms_between([NoteEvent(0, 0.5, 60)], 1.0, 1.5) == 0.0


# --------------------------------------------------------------------------- piano roll


def orange(image: np.ndarray) -> int:
    return int(
        (
            (image[..., 0] > 200)
            & (image[..., 1] > 120)
            & (image[..., 1] < 170)
            & (image[..., 2] < 80)
        ).sum()
    )


def test_piano_roll_is_a_readable_figure():
    from conftest import patterned_tokens

    assert (
        plots.note_name(60) == "C4" and plots.note_name(21) == "A0" and plots.note_name(70) == "B-4"
    )
    assert plots.layout(250, 4) == (4, 16)  # a 500-token reference piece: 62.5 bars in 4 rows of 16
    assert plots.layout(16 * 4 * 8 * 3, 4) == (8, 48)  # never more than 8 rows
    assert plots.pitch_window([60, 62]) == (55, 67)  # at least an octave, centred
    image = plots.piano_roll(REF.note_events(patterned_tokens(1, 500)), title="piece.mid")
    assert (
        image.dtype == np.uint8
        and image.shape[1] == plots.WIDTH_INCHES * plots.DPI
        and image.shape[2] == 3
    )
    assert 600 < image.shape[0] < 1200 and orange(image) > 5_000


def test_piano_roll_draws_real_durations():
    short = plots.piano_roll([NoteEvent(0, 1, 60)])
    long = plots.piano_roll([NoteEvent(0, 4, 60)])
    assert short.shape == long.shape
    assert 3 < orange(long) / orange(short) < 5  # four times as wide, give or take the edges


# ------------------------------------------------------------------------- progress inside an epoch


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_every_tenth_or_every_thirty_seconds():
    clock, out = Clock(), io.StringIO()
    progress = EpochProgress(2, 5, 100, terminal=False, clock=clock, out=out)
    assert progress.next_chunk() == 1  # no rate yet: one step to measure it
    clock.now = 0.5
    progress.update(1, 3.0)  # 2 steps/s: 30 s hold 60 steps, the next tenth is 9 away
    assert progress.next_chunk() == 9
    clock.now = 0.59
    progress.update(9, 18.0)  # 100 steps/s: the tenth wins
    assert progress.next_chunk() == 10
    clock.now = 100.59
    progress.update(10, 20.0)  # 0.1 steps/s: 30 s hold 3 steps
    assert progress.next_chunk() == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == "trainer: epoch 2/5: step 1/100 (1 %), 2 steps/s, loss 3.0000"
    assert lines[2] == "trainer: epoch 2/5: step 20/100 (20 %), 0.1 steps/s, loss 2.0500"


def test_progress_without_a_clock_ends_chunks_at_the_tenths_only():
    """Several workers must run the same chunks: then only the step count decides."""
    progress = EpochProgress(1, 1, 25, terminal=True, timed=False, enabled=False)
    chunks = []
    while progress.done < 25:
        chunks.append(progress.next_chunk())
        progress.update(chunks[-1], 1.0)
    assert chunks == [3] * 8 + [1]
