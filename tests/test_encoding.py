"""The encoding interface: the registry, loading saved configurations, bad files for both encodings,
and the reference encoding behind the interface (round trip, transposition against music21's own
reading of transposed MIDI files)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import patterned_tokens
from symusic import Score

from preprocessing import records, sample_data
from preprocessing.encodings import base, loader, midi_container, reference, registry
from preprocessing.encodings.midi_container import MidiParseError

ROOT = Path(__file__).resolve().parents[1]


def smf(track: bytes, declared_tracks: int = 1) -> bytes:
    """A format-0 Standard MIDI File around one track chunk's bytes."""
    header = (
        b"MThd"
        + (6).to_bytes(4, "big")
        + (0).to_bytes(2, "big")
        + declared_tracks.to_bytes(2, "big")
    )
    return header + (96).to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track


GOOD = reference.midi_bytes_from_tokens(patterned_tokens(seed=1, length=40))


def bad_files() -> dict[str, bytes]:
    """The held-out-style cases: each is a file a collection can hold, and none is music."""
    declared = int.from_bytes(GOOD[10:12], "big")
    wrong_count, separate = bytearray(GOOD), bytearray(GOOD)
    wrong_count[10:12] = (declared + 2).to_bytes(2, "big")
    separate[8:10] = (2).to_bytes(2, "big")
    return {
        "empty": b"",
        "random bytes": bytes(random.Random(7).randrange(256) for _ in range(300)),
        "truncated": GOOD[: len(GOOD) // 2],
        "text renamed": b"these are not the notes you are looking for\n",
        "wrong track count": bytes(wrong_count),
        "format 2": bytes(separate),
        "header of zeros": b"MThd" + b"\x00" * 10,
    }


# --------------------------------------------------------------------------- the registry


def test_registry_names_both_encodings_and_refuses_others():
    assert registry.NAMES == ("reference", "remi") and registry.DEFAULT == "reference"
    for name in registry.NAMES:
        assert loader.get(name).name == name
    with pytest.raises(
        registry.EncodingError, match="unknown encoding 'abc': choose one of reference, remi"
    ):
        loader.get("abc")


def test_the_reference_token_format_is_what_manifests_record():
    assert reference.ReferenceEncoding.registration.token_format == records.ENCODING
    assert (
        loader.get("reference").token_format == records.ENCODING == registry.REFERENCE.token_format
    )


def test_each_encoding_class_carries_its_own_registration():
    for registration in registry.REGISTRATIONS:
        cls = loader.encoding_class(registration.name)
        assert cls.registration is registration and cls.__name__ == registration.class_name
        assert registration.parse_function == f"{cls.__module__}:tokens_from_midi_bytes"
    with pytest.raises(registry.EncodingError, match="is not one this version reads"):
        registry.by_token_format("music21-pitch-normalorder-v0")


@pytest.mark.parametrize("name, absent", [("remi", "music21"), ("reference", "miditok")])
def test_an_encoding_imports_only_its_own_library(name, absent):
    code = (
        f"import sys; from preprocessing.encodings import loader; e = loader.get({name!r}); e.encode({GOOD!r}); "
        f"bad = {{{absent!r}, 'tensorflow', 'apache_beam'}} & set(sys.modules); assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", registry.NAMES)
def test_unknown_parts_mode_is_refused(name):
    with pytest.raises(ValueError, match="parts must be one of"):
        loader.get(name).encode(GOOD, parts="second")


# ------------------------------------------------------------------------ bad files, both encodings


@pytest.mark.parametrize("case", list(bad_files()))
@pytest.mark.parametrize("name", registry.NAMES)
def test_bad_files_are_one_readable_parse_error(name, case):
    with pytest.raises(MidiParseError) as caught:
        loader.get(name).encode(bad_files()[case])
    message = str(caught.value)
    assert message and "\n" not in message.strip()
    # the class the pipeline's dead letters already catch
    assert caught.type is midi_container.MidiParseError


def test_the_wrong_track_count_is_caught_before_symusic_reads_the_tracks_it_has():
    # symusic alone would read the tracks that are there; the container check says what is wrong.
    assert Score.from_midi(bad_files()["wrong track count"]).note_num() > 0
    with pytest.raises(MidiParseError, match="the header declares 4 tracks, the file holds 2"):
        loader.get("remi").encode(bad_files()["wrong track count"])


def test_a_header_declaring_fewer_tracks_than_the_file_holds_is_read_whole_by_both():
    """Both parsers read only the declared tracks (here the conductor track: no notes at all), so
    the file would count as empty, or as part of a piece; it is read with every track it holds."""
    from music21 import converter

    declared = int.from_bytes(GOOD[10:12], "big")
    fewer = GOOD[:10] + (declared - 1).to_bytes(2, "big") + GOOD[12:]
    assert Score.from_midi(fewer).note_num() == 0 < Score.from_midi(GOOD).note_num()
    assert (
        reference.tokens_from_score(converter.parseData(fewer, format="midi", forceSource=True))
        == []
    )
    assert midi_container.with_every_track(fewer) == (GOOD, 1)
    assert (
        midi_container.undeclared_tracks(fewer) == 1 and midi_container.undeclared_tracks(GOOD) == 0
    )
    for name in registry.NAMES:
        assert loader.get(name).encode(fewer) == loader.get(name).encode(GOOD) != []


@pytest.mark.filterwarnings("ignore:Unable to determine instrument")  # its Shift-JIS track name
def test_music21s_own_test04_is_read_whole_by_both():
    """music21's test file declares 18 tracks and holds 19: a real file, not made up here."""
    import music21

    path = Path(music21.__file__).parent / "midi" / "testPrimitive" / "test04.mid"
    data = path.read_bytes()
    assert midi_container.undeclared_tracks(data) == 1
    for name in registry.NAMES:
        assert loader.get(name).encode(data)


def test_format_2_is_refused_by_both_in_the_same_words():
    separate = bad_files()["format 2"]
    for name in registry.NAMES:
        with pytest.raises(MidiParseError) as caught:
            loader.get(name).encode(separate)
        assert str(caught.value) == (
            "format 2 (independent sequences) is not supported: its tracks are separate "
            "patterns, not one piece"
        )
    # bytes after the last track that are no whole chunk: allowed, as before
    padded = GOOD + b"\x00" * 7
    assert loader.get("reference").encode(padded) == loader.get("reference").encode(GOOD)


def test_symusics_own_message_reaches_the_error():
    velocity_129 = smf(
        bytes([0x00, 0x90, 0x3C, 0x81, 0x60, 0x80, 0x3C, 0x40, 0x00, 0xFF, 0x2F, 0x00])
    )
    with pytest.raises(
        MidiParseError, match=r"symusic could not parse it: RuntimeError: Get velocity=129"
    ):
        loader.get("remi").encode(velocity_129)
    with pytest.raises(
        MidiParseError, match="symusic could not parse it: .*first chunk length is not 6"
    ):
        loader.get("remi").encode(bad_files()["header of zeros"])


# -------------------------------------------------------------------- loading a saved configuration


def test_the_reference_encoding_saves_nothing_and_loads_without_reading():
    chosen = loader.get("reference")
    assert chosen.saved_files() == {} and chosen.registration.saved_files == ()

    def read(name):
        raise AssertionError(f"read {name}")

    loaded = loader.load("reference", read, expected_hash=chosen.config_hash)
    assert isinstance(loaded, reference.ReferenceEncoding)
    assert (
        len(chosen.config_hash) == 16 and chosen.config_hash == loader.get("reference").config_hash
    )
    with pytest.raises(registry.EncodingError, match="manifest records 0123"):
        loader.load("reference", read, expected_hash="0123")
    assert set(chosen.versions) == {"music21"}


def test_a_missing_saved_file_is_one_line():
    def read(name):
        raise FileNotFoundError(f"/data/{name} not found")

    with pytest.raises(
        registry.EncodingError,
        match=r"cannot read the remi encoding's tokenizer.json: "
        r"FileNotFoundError: /data/tokenizer.json not found",
    ):
        loader.load("remi", read)


# --------------------------------------------------------------------------- the reference encoding


def test_reference_round_trip_through_the_interface_on_embedded_pieces():
    reference = loader.get("reference")
    directory = Path(sample_data.ensure_dataset())
    for path in sorted(directory.glob("*.mid"), key=lambda p: p.stat().st_size)[:2]:
        tokens = reference.encode(path.read_bytes())
        assert tokens and reference.encode(reference.decode(tokens)) == tokens, path.name


def test_reference_grammar_allows_everything_and_note_events_follow_the_step():
    reference = loader.get("reference")
    grammar = reference.grammar(["0.4.7", "C4", "E-4"])
    assert grammar.mask(["C4"]).tolist() == [True, True, True]
    assert reference.note_events(["E-4", "0.4.7"]) == [
        base.NoteEvent(0.0, 0.5, 63),
        base.NoteEvent(0.5, 0.5, 60),
        base.NoteEvent(0.5, 0.5, 64),
        base.NoteEvent(0.5, 0.5, 67),
    ]


def test_reference_transposition_of_single_tokens():
    assert reference.transpose_token("C4", 1) == "C#4"
    assert reference.transpose_token("C#4", 2) == "E-4"  # music21's spelling of MIDI 63, not D#4
    assert reference.transpose_token("B-3", 2) == "C4"
    assert reference.transpose_token("4.7.11", 1) == "5.8.0"  # E G B up a semitone: F A- C
    # a symmetric chord: normal order starts elsewhere
    assert reference.transpose_token("0.4.8", 5) == "1.5.9"
    assert reference.transpose_token("0", 3) == "3"
    assert (
        reference.transpose_token("G9", 1) is None and reference.transpose_token("C0", -1) is None
    )
    codec = reference.ReferenceEncoding()
    assert codec.transpose(["C4", "G9"], 1) is None  # a piece moves token by token, or not at all
    assert codec.transpose(["C4", "0.4.7"], 0) == ["C4", "0.4.7"]
    assert codec.transpose(["C#4", "0.4.8"], 5) == ["F#4", "1.5.9"]


def transposed_midi(data: bytes, semitones: int) -> bytes:
    return Score.from_midi(data).shift_pitch(semitones).dumps_midi()


@pytest.mark.parametrize("parts", base.PARTS_MODES)
def test_reference_transposition_is_what_music21_reads_from_the_transposed_file(parts):
    """Every note of the MIDI file moved by symusic, then read by music21: the same tokens."""
    reference = loader.get("reference")
    directory = Path(sample_data.ensure_dataset())
    smallest = sorted(directory.glob("*.mid"), key=lambda p: p.stat().st_size)[0].read_bytes()
    for data in (smallest, GOOD):
        # symusic's rewrite of the file reads as the original does (so only the pitches differ
        # below)
        tokens = reference.encode(transposed_midi(data, 0), parts)
        assert tokens == reference.encode(data, parts)
        for semitones in (-5, 1, 6, 11):
            assert reference.transpose(tokens, semitones) == reference.encode(
                transposed_midi(data, semitones), parts
            )


def test_reference_chord_transposition_agrees_with_music21s_normal_order():
    """Normal order is not always a rotation of the transposed normal order (symmetric sets start
    on their lowest pitch class); the token-level search must give what music21 computes."""
    from music21 import chord

    def normal_order(classes):
        return ".".join(str(pc) for pc in chord.Chord(sorted(classes)).normalOrder)

    rng = np.random.default_rng(0)
    sets = [[0, 4, 8], [0, 3, 6, 9], [0, 6], [0, 2, 4, 6, 8, 10], [0, 1, 6, 7], [5, 9, 0, 3]]
    sets += [
        rng.choice(12, size=int(rng.integers(2, 7)), replace=False).tolist() for _ in range(12)
    ]
    for classes in sets:
        token = normal_order(classes)
        for semitones in (1, 5, 9):
            assert reference.transpose_token(token, semitones) == normal_order(
                (pc + semitones) % 12 for pc in classes
            )
