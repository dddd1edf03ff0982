"""Shared fixtures: small real MIDI files written by music21, and a real pipeline output made from
them.

Every MIDI file here is rendered by music21 from a token list we choose, so each test knows the
exact tokens a correct parser must read back (the encoding round-trips exactly; see
tests/test_reference_encoding.py).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from preprocessing.encodings import reference

# Beam's DirectRunner and TensorFlow both look for Google credentials and GPUs; keep the logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SCALE = ["C", "D", "E", "F", "G", "A", "B"]


def patterned_tokens(seed: int, length: int) -> list[str]:
    """A deterministic, learnable token sequence: rising/falling scale runs with cadence chords.

    It has structure a tiny LSTM can pick up within a few epochs (so 'loss falls' is a real signal),
    and a vocabulary of a few dozen tokens.
    """
    rng = random.Random(seed)
    tokens: list[str] = []
    while len(tokens) < length:
        start = rng.randrange(len(SCALE))
        octave = rng.choice([3, 4])
        direction = rng.choice([1, -1])
        for step in range(6):
            degree = (start + direction * step) % len(SCALE)
            tokens.append(f"{SCALE[degree]}{octave}")
        tokens.append(rng.choice(["0.4.7", "7.11.2", "5.9.0", "2.5.9"]))
    return tokens[:length]


def write_tokens_midi(path: Path, tokens: list[str]) -> Path:
    path.write_bytes(reference.midi_bytes_from_tokens(tokens))
    return path


def write_multipart_midi(path: Path) -> list[str]:
    """A two-part score plus a drum part (MIDI channel 10); returns the tokens of parts='all'."""
    from music21 import instrument, note, stream

    score = stream.Score()
    upper = stream.Part()
    upper.insert(0, instrument.Piano())
    lower = stream.Part()
    lower.insert(0, instrument.Violoncello())
    drums = stream.Part()
    drums.insert(0, instrument.BassDrum())
    melody = ["E4", "F#4", "G4", "A4", "B4", "C5", "D5", "E5", "D5", "C5", "B4", "A4"]
    bass = ["C3", "G2", "A2", "E2", "F2", "C3"]
    for name in melody:
        upper.append(note.Note(name, quarterLength=1))
    for name in bass:
        lower.append(note.Note(name, quarterLength=2))
    for _ in melody:
        drums.append(note.Unpitched(quarterLength=1))
    for part in (upper, lower, drums):
        score.insert(0, part)
    score.write("midi", fp=str(path))
    # Bass notes start on every other beat, together with a melody note: one chord token each.
    expected = []
    for beat, name in enumerate(melody):
        if beat % 2 == 0:
            expected.append(reference.chord_token([_pitch(name), _pitch(bass[beat // 2])]))
        else:
            expected.append(name)
    return expected


def _pitch(name: str):
    from music21 import pitch

    return pitch.Pitch(name)


@pytest.fixture(scope="session")
def midi_corpus(tmp_path_factory) -> dict:
    """A folder of good, short, empty and corrupt MIDI files, with the tokens each good file holds.

    Returns ``{"dir": Path, "tokens": {file name: tokens}, "bad": [file names], "empty": [...],
    "too_short": [...]}`` where ``tokens`` covers every file that parses (good, short and empty).
    """
    root = tmp_path_factory.mktemp("midi_corpus")
    tokens: dict[str, list[str]] = {}
    for index in range(4):
        name = f"piece_{index}.mid"
        tokens[name] = patterned_tokens(seed=index, length=30 + 7 * index)
        write_tokens_midi(root / name, tokens[name])
    tokens["Chorale.MIDI"] = write_multipart_midi(root / "Chorale.MIDI")
    tokens["short.mid"] = ["C4", "E4", "G4"]
    write_tokens_midi(root / "short.mid", tokens["short.mid"])
    # A file with only a drum part parses but has no pitched notes: counted as empty, not an error.
    from music21 import instrument, note, stream

    drums = stream.Part()
    drums.insert(0, instrument.SnareDrum())
    for _ in range(8):
        drums.append(note.Unpitched(quarterLength=1))
    drums.write("midi", fp=str(root / "drums_only.midi"))
    tokens["drums_only.midi"] = []

    good_bytes = (root / "piece_0.mid").read_bytes()
    (root / "truncated.mid").write_bytes(good_bytes[: len(good_bytes) // 2])
    (root / "empty.mid").write_bytes(b"")
    (root / "renamed.mid").write_text("these are not the notes you are looking for\n")
    (root / "garbage.MID").write_bytes(bytes(random.Random(7).randrange(256) for _ in range(300)))
    (root / "reference.txt").write_text("not matched: wrong extension\n")
    return {
        "dir": root,
        "tokens": tokens,
        "bad": ["truncated.mid", "empty.mid", "renamed.mid", "garbage.MID"],
        "empty": ["drums_only.midi"],
        "too_short": ["short.mid"],
    }


@pytest.fixture(scope="session")
def training_midi_dir(tmp_path_factory) -> Path:
    """Twelve patterned pieces of 120 tokens: enough windows for a tiny model to learn from."""
    root = tmp_path_factory.mktemp("training_midi")
    for index in range(12):
        write_tokens_midi(
            root / f"tune_{index:02d}.mid", patterned_tokens(seed=100 + index, length=120)
        )
    return root


@pytest.fixture(scope="session")
def records_dir(training_midi_dir, tmp_path_factory) -> Path:
    """A real pipeline output (sequence length 8, stride 1) of ``training_midi_dir``, for trainer
    tests."""
    from preprocessing import pipeline

    out = tmp_path_factory.mktemp("records")
    pipeline.run(
        [
            "--input",
            str(training_midi_dir),
            "--output",
            str(out),
            "--sequence-length",
            "8",
            "--validation-fraction",
            "0.25",
            "--num-shards",
            "2",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    return out
