"""trainer.bits_per_beat: tokens per beat and per note of each encoding, and the bits figures."""

from __future__ import annotations

import math

import pytest
from symusic import Note, Score, Track

from preprocessing.encodings import loader
from trainer.bits_per_beat import (
    BITS_PER_BEAT,
    BITS_PER_NOTE,
    TokenRate,
    bits_figures,
    piece_length,
    token_rate,
    with_bits,
)


def midi_of(notes: list[tuple[float, float, int]], ticks: int = 480) -> bytes:
    """A one-track MIDI file of ``(onset, duration, pitch)`` notes, times in quarter notes."""
    score = Score(ticks)
    track = Track()
    for onset, duration, pitch in notes:
        track.notes.append(Note(int(onset * ticks), int(duration * ticks), pitch, 80))
    score.tracks.append(track)
    return score.dumps_midi()


def test_the_reference_spends_two_tokens_a_beat_and_counts_every_pitch_it_plays():
    reference = loader.get("reference")
    # a note, a note, a one-class chord (written in two octaves), a two-class chord
    piece = ["C4", "E4", "0", "4.7"]
    assert piece_length(piece, reference) == (2.0, 6)
    rate = token_rate([piece, ["G4", "A4"]], reference)
    assert (rate.pieces, rate.tokens, rate.quarter_notes, rate.notes) == (2, 6, 3.0, 8)
    assert rate.tokens_per_beat == 2.0 and rate.tokens_per_note == pytest.approx(6 / 8)


def test_remi_pieces_last_until_their_last_note_ends():
    remi = loader.get("remi")
    # four quarter notes, a chord of two half notes from beat 4, then a bar's rest and a last
    # eighth note at beat 12: the piece ends at 12.5 quarter notes
    notes = [(beat, 1.0, 60 + beat) for beat in range(4)]
    notes += [(4.0, 2.0, 67), (4.0, 2.0, 71), (12.0, 0.5, 72)]
    tokens = remi.encode(midi_of(notes))
    assert piece_length(tokens, remi) == (12.5, 7)
    rate = token_rate([tokens], remi)
    assert rate.tokens_per_beat == pytest.approx(len(tokens) / 12.5)
    assert rate.tokens_per_note == pytest.approx(len(tokens) / 7)


def test_bits_figures_turn_nats_per_token_into_bits_per_beat_and_note():
    rate = TokenRate(pieces=1, tokens=30, quarter_notes=10.0, notes=20)
    one_bit = bits_figures(math.log(2), rate)  # a loss of ln 2 nats is one bit per token
    assert one_bit == {BITS_PER_BEAT: pytest.approx(3.0), BITS_PER_NOTE: pytest.approx(1.5)}
    assert bits_figures(2 * math.log(2), rate)[BITS_PER_BEAT] == pytest.approx(6.0)
    # unknown rate, a loss that is not a number, pieces without notes: no figure, never a wrong one
    assert bits_figures(1.0, None) == {} and bits_figures(math.nan, rate) == {}
    assert bits_figures(1.0, TokenRate(1, 5, 0.0, 0)) == {}
    assert with_bits({"loss": 1.0}, rate) == {"loss": 1.0}
    assert with_bits({"val_loss": math.log(2)}, rate)[BITS_PER_NOTE] == pytest.approx(1.5)
    assert TokenRate(2, 6, 3.0, 8).as_dict()["tokens_per_beat"] == 2.0
