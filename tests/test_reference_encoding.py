"""The token encoding against music21 streams: the reference's tokens, all-parts merging, the
inverse."""

from __future__ import annotations

import random

import pytest
from conftest import patterned_tokens, write_multipart_midi
from helpers import with_silent_gap
from music21 import chord, converter, instrument, note, stream

from preprocessing.encodings import midi_container, reference


def _reference_get_notes(midi):
    """The reference notebook's loop body, verbatim but for ``.flat`` (removed in music21 10)."""
    found = []
    try:
        s2 = instrument.partitionByInstrument(midi)
        notes_to_parse = s2.parts[0].recurse()
    except Exception:  # noqa: BLE001
        notes_to_parse = midi.flatten().notes
    for element in notes_to_parse:
        if isinstance(element, note.Note):
            found.append(str(element.pitch))
        elif isinstance(element, chord.Chord):
            found.append(".".join(str(n) for n in element.normalOrder))
    return found


def _score_with_parts(tmp_path):
    score = stream.Score()
    piano = stream.Part()
    piano.insert(0, instrument.Piano())
    piano.append(note.Note("E-4", quarterLength=1))
    piano.append(chord.Chord(["C4", "E4", "G4"], quarterLength=1))
    piano.append(note.Rest(quarterLength=1))
    piano.append(note.Note("C#5", quarterLength=1))
    violin = stream.Part()
    violin.insert(0, instrument.Violin())
    violin.append(note.Note("G3", quarterLength=2))
    violin.append(note.Note("A3", quarterLength=2))
    drums = stream.Part()
    drums.insert(0, instrument.BassDrum())
    for _ in range(4):
        drums.append(note.Unpitched(quarterLength=1))
    for part in (piano, violin, drums):
        score.insert(0, part)
    path = tmp_path / "three_parts.mid"
    score.write("midi", fp=str(path))
    return path


def test_note_and_chord_tokens_are_the_references():
    assert reference.element_token(note.Note("E-4")) == "E-4"
    assert reference.element_token(note.Note("C#5")) == "C#5"
    assert reference.element_token(chord.Chord(["E4", "G4", "B4"])) == "4.7.11"
    # normal order, not sorted pitch classes: B D F# is 11.2.6
    assert reference.element_token(chord.Chord(["D4", "F#4", "B4"])) == "11.2.6"
    assert reference.element_token(note.Rest()) is None
    assert reference.element_token(note.Unpitched()) is None


def test_first_part_mode_equals_the_reference_loop(tmp_path):
    path = _score_with_parts(tmp_path)
    data = path.read_bytes()
    expected = _reference_get_notes(converter.parse(str(path), forceSource=True))
    assert expected == ["E-4", "0.4.7", "C#5"]
    assert reference.tokens_from_midi_bytes(data, parts="first") == expected


def test_all_parts_mode_merges_simultaneous_onsets_and_drops_percussion(tmp_path):
    path = _score_with_parts(tmp_path)
    tokens = reference.tokens_from_midi_bytes(path.read_bytes(), parts="all")
    # beat 0: E-4 (piano) + G3 (violin) -> chord 3.7; beat 1: C E G; beat 2: A3 (violin, piano
    # rests); beat 3: C#5. The drum part on channel 10 contributes nothing.
    assert tokens == ["3.7", "0.4.7", "A3", "C#5"]


def test_percussion_part_is_recognised_by_channel_10(tmp_path):
    path = _score_with_parts(tmp_path)
    score = converter.parseData(path.read_bytes(), format="midi", forceSource=True)
    flags = [reference.is_percussion_part(part) for part in score.parts]
    assert flags == [False, False, True]


def test_unison_doubling_is_one_note_not_a_chord():
    score = stream.Score()
    for _ in range(2):
        part = stream.Part()
        part.append(note.Note("D4", quarterLength=1))
        part.append(note.Note("F4", quarterLength=1))
        score.insert(0, part)
    assert reference.tokens_all_parts(score) == ["D4", "F4"]


def test_multipart_file_in_all_mode(tmp_path):
    path = tmp_path / "chorale.mid"
    expected = write_multipart_midi(path)
    assert reference.tokens_from_midi_bytes(path.read_bytes(), parts="all") == expected


def test_decoding_follows_the_reference_predict_step():
    s = reference.stream_from_tokens(["E-4", "4.7.11", "0"])
    elements = list(s.notes)
    assert [float(e.offset) for e in elements] == [0.0, 0.5, 1.0]
    assert isinstance(elements[0], note.Note) and elements[0].nameWithOctave == "E-4"
    assert isinstance(elements[1], chord.Chord)
    # E4 G4 B4: pitch classes in octave 4
    assert [p.midi for p in elements[1].pitches] == [64, 67, 71]
    # one pitch class: doubled at the octave so it reads back as a chord token
    assert [p.midi for p in elements[2].pitches] == [60, 72]
    assert isinstance(s.getInstrument(), instrument.Piano)


def test_token_midi_pitches_are_what_decoding_writes():
    for token in ["E-4", "C#5", "G2", "4.7.11", "11.2.6", "0", "9"]:
        element = reference.element_from_token(token, 0.0)
        assert [p.midi for p in element.pitches] == reference.token_midi_pitches(token), token


@pytest.mark.parametrize("parts", reference.PARTS_MODES)
def test_round_trip_through_a_midi_file(parts):
    rng = random.Random(3)
    names = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B"]
    tokens = []
    for _ in range(150):
        if rng.random() < 0.5:
            tokens.append(f"{rng.choice(names)}{rng.randint(1, 7)}")
        else:
            tokens.append(
                reference.chord_token(
                    note.Note(pc).pitch for pc in rng.sample(range(12), rng.randint(1, 4))
                )
            )
    tokens += ["E-4", "E-4", "E-4"]  # repeated notes must stay separate onsets
    assert (
        reference.tokens_from_midi_bytes(reference.midi_bytes_from_tokens(tokens), parts=parts)
        == tokens
    )


def test_patterned_fixture_tokens_round_trip():
    tokens = patterned_tokens(seed=5, length=60)
    assert reference.tokens_from_midi_bytes(reference.midi_bytes_from_tokens(tokens)) == tokens


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello, world", "not a MIDI file"),
        (b"MThd" + b"\x00" * 10, "could not parse"),
    ],
)
def test_bad_bytes_raise_a_readable_error(data, reason):
    with pytest.raises(midi_container.MidiParseError, match=reason):
        reference.tokens_from_midi_bytes(data)


def test_truncated_file_is_an_error_not_a_partial_piece():
    data = reference.midi_bytes_from_tokens(patterned_tokens(seed=1, length=40))
    with pytest.raises(midi_container.MidiParseError):
        reference.tokens_from_midi_bytes(data[: len(data) // 2])


def test_unknown_parts_mode_is_refused():
    with pytest.raises(ValueError, match="parts must be one of"):
        reference.tokens_from_score(stream.Score(), parts="second")  # type: ignore[arg-type]


def _music21_length_quarters(data: bytes) -> float:
    """The longest track's summed delta times over ticks per quarter, as music21's own MIDI
    reader sees them."""
    from music21 import midi

    midi_file = midi.MidiFile()
    midi_file.readstr(data)
    ticks = max(
        sum(e.time for e in track.events if isinstance(e, midi.DeltaTime))
        for track in midi_file.tracks
    )
    return ticks / midi_file.ticksPerQuarterNote


def test_the_length_in_quarter_notes_comes_from_the_header_and_the_delta_times(tmp_path):
    data = reference.midi_bytes_from_tokens(patterned_tokens(seed=2, length=40))
    assert midi_container.midi_length_quarters(data) == _music21_length_quarters(data) > 20
    multipart = tmp_path / "multipart.mid"
    write_multipart_midi(multipart)
    assert midi_container.midi_length_quarters(multipart.read_bytes()) == _music21_length_quarters(
        multipart.read_bytes()
    )
    gap = with_silent_gap(data, 0x0FFFFFFF, before_note=5)
    assert len(gap) == len(data) + 3  # issue 10's reproduction: three bytes inserted
    assert (
        midi_container.midi_length_quarters(gap)
        == midi_container.midi_length_quarters(data) + 0x0FFFFFFF / 10080
    )


def test_the_length_scan_reads_running_status_meta_and_sysex_events():
    track = bytes.fromhex(
        "00 ff 51 03 07 a1 20"  # tempo (meta)
        "60 90 3c 40"  # 96 ticks, note on
        "60 3c 00"  # 96 ticks, running status: note on at velocity 0
        "81 00 f0 03 7e 7f 09"  # 128 ticks (two-byte delta), system exclusive
        "30 c0 05"  # 48 ticks, program change: one data byte
        "00 ff 2f 00"  # end of track
    )
    data = b"MThd" + (6).to_bytes(4, "big") + bytes.fromhex("0000 0001 0060") + b"MTrk"
    data += len(track).to_bytes(4, "big") + track
    assert (
        midi_container.midi_length_quarters(data)
        == _music21_length_quarters(data)
        == (96 + 96 + 128 + 48) / 96
    )
    # cut inside the sysex: the length so far
    assert midi_container.track_ticks(track[:-8]) == 96 + 96 + 128
    smpte = data[:12] + bytes.fromhex("e728") + data[14:]  # 25 frames a second: no quarter notes
    assert midi_container.midi_length_quarters(smpte) is None


def test_an_absurdly_long_file_is_refused_before_music21_reads_it():
    data = reference.midi_bytes_from_tokens(patterned_tokens(seed=2, length=40))
    with pytest.raises(
        midi_container.MidiParseError, match=r"lasts 26,6\d\d quarter notes, more than the 20,000"
    ):
        # parsed, this takes about a minute
        reference.tokens_from_midi_bytes(with_silent_gap(data, 0x0FFFFFFF))
    ticks_per_quarter = 10080
    midi_container.check_midi_length(
        with_silent_gap(data, (midi_container.MAX_QUARTER_NOTES - 100) * ticks_per_quarter)
    )
