"""REMI through MidiTok on real MIDI files: the round trip and transposition on every piece of the
embedded dataset, merging and drums, the saved tokenizer, and the sampling grammar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_multipart_midi
from helpers import walk_grammar
from miditok import REMI, TokenizerConfig, TokSequence
from symusic import Score

from preprocessing import sample_data
from preprocessing.encodings import loader, registry, remi
from preprocessing.encodings.midi_container import MidiParseError
from preprocessing.encodings.remi_grammar import time_value


@pytest.fixture(scope="module")
def codec() -> remi.RemiEncoding:
    return loader.get("remi")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def pieces() -> dict[str, bytes]:
    directory = Path(sample_data.ensure_dataset())
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.mid"))}


@pytest.fixture(scope="module")
def tokens(codec, pieces) -> dict[str, list[str]]:
    return {name: codec.encode(data) for name, data in pieces.items()}


@pytest.fixture(scope="module")
def vocab(tokens) -> list[str]:
    """What the pipeline's vocabulary would be: the sorted distinct tokens of the data."""
    return sorted({token for piece in tokens.values() for token in piece})


# --------------------------------------------------------------------------- tokens


def test_every_embedded_piece_round_trips_through_a_midi_file(codec, tokens):
    assert len(tokens) == 93
    for name, piece in tokens.items():
        assert piece[0].split("_")[0] in ("Bar", "Rest") and any(
            t.startswith("Duration_") for t in piece
        ), name
        assert codec.encode(codec.decode(piece)) == piece, name


def test_the_vocabulary_is_a_subset_of_the_tokenizers(codec, vocab):
    assert set(vocab) <= set(codec.tokenizer.vocab)
    assert {token.split("_")[0] for token in vocab} == {
        "Bar",
        "Position",
        "Pitch",
        "Duration",
        "Rest",
    }


def test_transposing_tokens_equals_encoding_the_transposed_file(codec, pieces, tokens):
    for name, data in list(pieces.items())[::4]:
        for semitones in (-4, 3, 7):
            moved = codec.encode(Score.from_midi(data).shift_pitch(semitones).dumps_midi())
            assert codec.transpose(tokens[name], semitones) == moved, (name, semitones)


def test_a_transposition_that_leaves_the_piano_is_none(codec):
    assert codec.transpose(["Bar_None", "Position_0", "Pitch_100", "Duration_1.0.4"], 9) is None
    assert codec.transpose(["Pitch_21", "Duration_1.0.4"], -1) is None
    assert codec.transpose(["Pitch_21", "Duration_1.0.4"], 87) == ["Pitch_108", "Duration_1.0.4"]


def test_all_parts_merge_and_drums_never_sound(codec, tmp_path):
    path = tmp_path / "three_parts.mid"
    write_multipart_midi(path)  # melody (piano), bass (cello), drums on channel 10
    played = {int(t[6:]) for t in codec.encode(path.read_bytes()) if t.startswith("Pitch_")}
    score = Score.from_midi(path.read_bytes())
    melody, bass, drums = (
        {n.pitch for n in track.notes} for track in score.tracks if track.note_num()
    )
    assert [t.is_drum for t in score.tracks if t.note_num()] == [False, False, True]
    assert played == melody | bass and not drums & played
    first = {
        int(t[6:]) for t in codec.encode(path.read_bytes(), parts="first") if t.startswith("Pitch_")
    }
    assert first == melody


def test_a_file_with_only_drums_is_empty(codec, tmp_path):
    from music21 import instrument, note, stream

    drums = stream.Part()
    drums.insert(0, instrument.SnareDrum())
    for _ in range(8):
        drums.append(note.Unpitched(quarterLength=1))
    drums.write("midi", fp=str(tmp_path / "drums.mid"))
    assert codec.encode((tmp_path / "drums.mid").read_bytes()) == []


def test_unison_voices_overlapping_are_cut_so_the_file_reads_back(codec):
    """Two voices on one pitch, the second entering while the first still sounds."""
    long_then_short = [
        "Bar_None",
        "Position_0",
        "Pitch_60",
        "Duration_2.0.4",
        "Position_4",
        "Pitch_60",
        "Duration_0.2.4",
    ]
    events = codec.note_events(long_then_short)
    assert [(e.onset, e.duration, e.pitch) for e in events] == [(0.0, 1.0, 60), (1.0, 0.5, 60)]
    assert codec.encode(codec.decode(long_then_short)) == [
        "Bar_None",
        "Position_0",
        "Pitch_60",
        "Duration_1.0.4",
        "Position_4",
        "Pitch_60",
        "Duration_0.2.4",
    ]


# --------------------------------------------------------------------------- the saved tokenizer


def test_the_saved_tokenizer_loads_back_with_the_same_hash_and_tokens(codec, pieces, tokens):
    saved = codec.saved_files()
    assert (
        list(saved) == ["tokenizer.json"]
        and json.loads(saved["tokenizer.json"])["tokenization"] == "REMI"
    )
    loaded = loader.load("remi", saved.__getitem__, expected_hash=codec.config_hash)
    assert loaded.config_hash == codec.config_hash == loader.get("remi").config_hash
    name = next(iter(pieces))
    assert loaded.encode(pieces[name]) == tokens[name]
    assert codec.versions == {"miditok": "3.1.0", "symusic": "0.6.0"}


def test_another_configuration_is_refused_with_one_line(codec):
    config = remi.tokenizer_config()
    config.beat_res = {(0, 4): 8, (4, 12): 4}
    other = remi.RemiEncoding(REMI(config))
    assert other.config_hash != codec.config_hash
    with pytest.raises(
        registry.EncodingError, match=f"records {codec.config_hash}: the tokens were made"
    ):
        loader.load("remi", other.saved_files().__getitem__, expected_hash=codec.config_hash)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not a MidiTok tokenizer file"),
        (
            json.dumps({"tokenization": "TSD", "config": {}}).encode(),
            "holds a MidiTok TSD tokenizer, not REMI",
        ),
    ],
)
def test_a_saved_file_that_is_not_a_remi_tokenizer_is_refused(content, message):
    with pytest.raises(registry.EncodingError, match=message):
        loader.load("remi", {"tokenizer.json": content}.__getitem__)


def test_features_the_grammar_does_not_know_are_refused():
    with pytest.raises(registry.EncodingError, match="use_velocities, use_time_signatures"):
        remi.RemiEncoding(REMI(TokenizerConfig(use_velocities=True, use_time_signatures=True)))


# --------------------------------------------------------------------------- the grammar


def test_every_embedded_piece_is_allowed_by_the_grammar(codec, tokens, vocab):
    for name, state in walk_grammar(codec.grammar(vocab), vocab, tokens).items():
        assert state.finished, name


def sample(grammar, rng: np.random.Generator, length: int, masked: bool = True) -> list[str]:
    state, out = grammar.start(), []
    for _ in range(length):
        allowed = state.allowed() if masked else np.ones(len(grammar.vocab), dtype=bool)
        token = grammar.vocab[int(rng.choice(np.flatnonzero(allowed)))]
        out.append(token)
        state.push(token)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_uniform_sampling_under_the_grammar_decodes_in_full(codec, vocab, seed):
    tokens = sample(codec.grammar(vocab), np.random.default_rng(seed), 500)
    assert codec.tokenizer.tokens_errors(TokSequence(tokens=list(tokens))) == 0
    notes = codec.tokenizer.decode([TokSequence(tokens=list(tokens))]).tracks[0].notes
    complete = sum(t.startswith("Pitch_") for t in tokens) - tokens[-1].startswith("Pitch_")
    assert len(notes) == complete  # no note dropped
    onsets = [n.time for n in notes]
    assert onsets == sorted(onsets)  # time never goes backwards
    assert len({n.duration for n in notes}) > 1


def test_the_same_sampling_without_the_grammar_breaks(codec, vocab):
    """The test above can fail: unmasked, uniform sampling gives MidiTok errors."""
    tokens = sample(codec.grammar(vocab), np.random.default_rng(0), 500, masked=False)
    assert codec.tokenizer.tokens_errors(TokSequence(tokens=list(tokens))) > 0


def test_grammar_rules_one_by_one(codec, vocab):
    grammar = codec.grammar(vocab)

    def allowed(tokens):
        return {vocab[i] for i in np.flatnonzero(grammar.mask(tokens))}

    assert {t.split("_")[0] for t in allowed([])} == {"Bar", "Position", "Rest"}
    assert {t.split("_")[0] for t in allowed(["Bar_None", "Position_4", "Pitch_60"])} == {
        "Duration"
    }
    after_note = allowed(["Bar_None", "Position_4", "Pitch_60", "Duration_1.0.4"])
    # no repeated pitch at one position
    assert "Pitch_60" not in after_note and "Pitch_62" in after_note
    # time moves forward in a bar
    assert "Position_4" not in after_note and "Position_5" in after_note
    assert "Bar_None" in after_note and "Rest_0.1.4" in after_note
    # a rest from the end of a 1-beat note at position 4 (so from 8) of 1 beat ends at position 12
    after_rest = allowed(["Bar_None", "Position_4", "Pitch_60", "Duration_1.0.4", "Rest_1.0.2"])
    assert {t.split("_")[0] for t in after_rest} == {"Rest", "Position", "Bar"}
    assert "Position_11" not in after_rest and "Position_12" in after_rest
    assert not grammar.start(["Bar_None", "Position_0", "Pitch_60"]).finished
    assert time_value("1.2.4", 4) == 6 and time_value("3.0.1", 4) == 12
    with pytest.raises(ValueError, match="needs Bar, Position, Pitch and Duration"):
        codec.grammar(["Bar_None", "Pitch_60"])


def test_a_file_whose_notes_all_lie_outside_the_piano_range_says_so():
    """Not "empty (no notes)": a dead letter that names the range, and where the notes lie."""
    from symusic import Note, Score, Track

    score = Score(480)
    track = Track(program=0)
    track.notes.extend([Note(0, 480, 10, 80), Note(480, 480, 115, 80)])
    score.tracks.append(track)
    with pytest.raises(MidiParseError) as caught:
        loader.get("remi").encode(score.dumps_midi())
    assert str(caught.value) == (
        "none of its 2 notes lies in the piano range REMI keeps, MIDI 21-108 (they lie at MIDI 10-115)"
    )
    track.notes.append(Note(960, 480, 60, 80))  # one note inside: a piece of one note
    assert [t for t in loader.get("remi").encode(score.dumps_midi()) if t.startswith("Pitch")] == [
        "Pitch_60"
    ]
