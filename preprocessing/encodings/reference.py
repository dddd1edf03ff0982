"""The reference encoding: the reference notebook's pitches and chords, via music21, and its
inverse.

A token is what the reference's ``get_notes`` appends: a single note is ``str(note.pitch)``
(``E-4``, ``C#5``), a chord is its ``normalOrder`` joined with dots (``4.7.11``). Rests are not
tokens.

Two ways to choose the notes of a piece (``parts``):

* ``"first"`` reproduces the reference exactly: ``partitionByInstrument(score).parts[0].recurse()``,
  falling back to ``score.flatten().notes`` when there are no instrument parts. On multi-track files
  this keeps one instrument and drops the rest of the music.
* ``"all"`` (the default) takes the notes of every non-percussion part, in time order, and merges
  everything that starts at the same offset into one token: one distinct pitch stays a note token,
  several become a chord token. Percussion (MIDI channel 10) never yields pitched tokens.

Pure functions over music21 objects, and :class:`ReferenceEncoding`, the
:class:`~preprocessing.encodings.base.Encoding` that calls them; no Beam, no TensorFlow. Where and
why encoding and decoding differ from the reference notebook: ``docs/ENCODING.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Literal

import music21
from music21 import chord, converter, instrument, midi, note, pitch, stream

from preprocessing.encodings import registry
from preprocessing.encodings.base import PARTS_MODES, Encoding, NoteEvent, check_parts, stable_hash
from preprocessing.encodings.midi_container import (
    MidiParseError,
    check_midi_length,
    with_every_track,
)

PartsMode = Literal["all", "first"]

STEP_QUARTER_LENGTH = 0.5
"""The reference's predict step writes one token every half quarter note."""


# --------------------------------------------------------------------------- encoding


def note_token(n: note.Note) -> str:
    """``E-4``: the note's pitch with its octave, as the reference writes it."""
    return str(n.pitch)


def chord_token(pitches: Iterable) -> str:
    """``4.7.11``: the normal order of the pitch classes, as the reference writes a chord."""
    return ".".join(str(pc) for pc in chord.Chord(list(pitches)).normalOrder)


def element_token(element) -> str | None:
    """The token of one music21 element, or None for anything that is not a pitched note or chord.

    ``note.Unpitched`` and ``percussion.PercussionChord`` are not ``Note``/``Chord`` subclasses, so
    drum hits fall through here even when their part was not recognised as percussion.
    """
    if isinstance(element, note.Note):
        return note_token(element)
    if isinstance(element, chord.Chord):
        return ".".join(str(pc) for pc in element.normalOrder)
    return None


def is_percussion_part(part: stream.Stream) -> bool:
    """True when the part plays on MIDI channel 10 (index 9) or holds an unpitched-percussion
    instrument."""
    for inst in part.recurse().getElementsByClass(instrument.Instrument):
        if isinstance(inst, instrument.UnpitchedPercussion) or inst.midiChannel == 9:
            return True
    return False


def tokens_first_part(score: stream.Stream) -> list[str]:
    """Exactly the reference's ``get_notes`` for one parsed file."""
    try:
        notes_to_parse = instrument.partitionByInstrument(score).parts[0].recurse()
    except Exception:  # noqa: BLE001 - the reference's bare except: no instrument parts at all
        notes_to_parse = score.flatten().notes
    return [tok for tok in (element_token(el) for el in notes_to_parse) if tok is not None]


def tokens_all_parts(score: stream.Stream) -> list[str]:
    """Every non-percussion part, in time order, simultaneous onsets merged into one token."""
    parts = list(score.parts) if isinstance(score, stream.Score) and score.parts else [score]
    onsets: dict[Fraction | float, list] = {}
    for part in parts:
        if is_percussion_part(part):
            continue
        for element in part.flatten().notes:
            if isinstance(element, note.Note):
                onsets.setdefault(element.offset, []).append(element.pitch)
            elif isinstance(element, chord.Chord):
                onsets.setdefault(element.offset, []).extend(element.pitches)
    tokens = []
    for offset in sorted(onsets):
        pitches = onsets[offset]
        distinct = {p.midi: p for p in pitches}
        if len(distinct) == 1:
            tokens.append(str(next(iter(distinct.values()))))
        else:
            tokens.append(chord_token(pitches))
    return tokens


def tokens_from_score(score: stream.Stream, parts: PartsMode = "all") -> list[str]:
    if parts == "all":
        return tokens_all_parts(score)
    if parts == "first":
        return tokens_first_part(score)
    raise ValueError(f"parts must be one of {PARTS_MODES}, not {parts!r}")


def parse_midi_bytes(data: bytes) -> stream.Score:
    """Parse MIDI bytes with music21, as ``converter.parse(path)`` does for a ``.mid`` file.

    Parsing from bytes never consults music21's on-disk parse cache, so neither results nor timings
    depend on earlier runs; ``forceSource=True`` says so explicitly.
    """
    data, _ = with_every_track(data)
    check_midi_length(data)
    try:
        return converter.parseData(data, format="midi", forceSource=True)
    except Exception as exc:  # noqa: BLE001 - music21 raises many types for broken files
        raise MidiParseError(f"music21 could not parse it: {type(exc).__name__}: {exc}") from exc


def tokens_from_midi_bytes(data: bytes, parts: PartsMode = "all") -> list[str]:
    """Tokens of one MIDI file's bytes; raises :class:`MidiParseError` for a file that is not
    MIDI."""
    score = parse_midi_bytes(data)
    try:
        return tokens_from_score(score, parts)
    except Exception as exc:  # noqa: BLE001 - a structurally odd score is a bad file, not a crash
        raise MidiParseError(
            f"music21 parsed it but its notes could not be read: {type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- decoding


def is_chord_token(token: str) -> bool:
    """Chord tokens are pitch-class numbers joined by dots (``0``, ``4.7.11``); note tokens are
    names."""
    return "." in token or token.isdigit()


def token_midi_pitches(token: str) -> list[int]:
    """The MIDI pitch numbers that :func:`element_from_token` writes for ``token`` (for piano rolls
    and audio previews, which need numbers, not music21 objects)."""
    if is_chord_token(token):
        classes = [int(pc) for pc in token.split(".")]
        pitches = [60 + pc for pc in classes]
        return pitches + [72 + classes[0]] if len(classes) == 1 else pitches
    return [pitch.Pitch(token).midi]


def element_from_token(
    token: str, offset: float, duration: float = STEP_QUARTER_LENGTH
) -> note.Note | chord.Chord:
    """The reference's predict step for one token, changed only so that every token reads back as
    itself.

    A chord token becomes a chord of those pitch classes in octave 4 (``note.Note(int)``), a note
    token keeps its octave; both on a piano. Each element lasts ``duration`` (the step), and a chord
    of one pitch class (token ``0``) is written in octaves 4 and 5 (``docs/ENCODING.md`` says why).
    """
    if is_chord_token(token):
        classes = [int(pc) for pc in token.split(".")]
        if len(classes) == 1:
            upper = note.Note(classes[0])
            upper.octave = 5
            members = [note.Note(classes[0]), upper]
        else:
            members = [note.Note(pc) for pc in classes]
        for member in members:
            member.storedInstrument = instrument.Piano()
        element: note.Note | chord.Chord = chord.Chord(members)
    else:
        element = note.Note(token)
        element.storedInstrument = instrument.Piano()
    element.offset = offset
    element.quarterLength = duration
    return element


def stream_from_tokens(tokens: Sequence[str], step: float = STEP_QUARTER_LENGTH) -> stream.Stream:
    """A piano stream playing ``tokens`` one every ``step`` quarter lengths (the reference's
    output)."""
    output = stream.Stream()
    output.insert(0, instrument.Piano())
    for index, token in enumerate(tokens):
        output.insert(index * step, element_from_token(token, index * step, step))
    return output


def midi_bytes_from_tokens(tokens: Sequence[str], step: float = STEP_QUARTER_LENGTH) -> bytes:
    """The MIDI file (as bytes) that :func:`stream_from_tokens` describes."""
    return midi.translate.streamToMidiFile(stream_from_tokens(tokens, step)).writestr()


# --------------------------------------------------------------------------- transposition

TRANSPOSABLE_MIDI_RANGE = (12, 127)
"""The MIDI numbers a transposed note token may have: C0 to G9. music21 names MIDI 0-11 with
octave -1 (MIDI 4 is ``E-1``), and those names read back as other notes (``E-1`` is E-flat 1)."""


@functools.lru_cache(maxsize=16384)
def transpose_token(token: str, semitones: int) -> str | None:
    """The token music21 reads for this token's notes moved by ``semitones``; None out of range.

    A note token becomes the name music21 gives a MIDI number when it reads a MIDI file
    (``str(Pitch(midi=n))``: C C# D E- E F F# G G# A B- B, whatever the source's spelling). A chord
    token's pitch classes move round the circle and are put in normal order again, which may rotate
    the token (``0.4.8`` up 5 semitones is ``1.5.9``, not ``5.9.1``); chords have no range.
    """
    if is_chord_token(token):
        return transpose_chord_token(token, semitones)
    number = pitch.Pitch(token).midi + semitones
    low, high = TRANSPOSABLE_MIDI_RANGE
    return str(pitch.Pitch(midi=number)) if low <= number <= high else None


def transpose_chord_token(token: str, semitones: int) -> str:
    """``Chord.normalOrder`` of the chord moved by ``semitones``, without building a music21 chord.

    music21 finds a normal order by looking up the set class's normal form transposed to 0 and
    trying the chord's pitch classes in ascending order as its first note; the first that gives the
    chord's set wins. A token is such a normal order, so its shape (the token minus its first pitch
    class) is that normal form, and the same search over the moved set gives music21's answer
    (checked against music21 for every set of pitch classes and every shift), thousands of times
    faster than building the chord (microseconds against tens of milliseconds for ``normalOrder``).
    """
    order = [int(pc) for pc in token.split(".")]
    shape = [(pc - order[0]) % 12 for pc in order]
    moved = {(pc + semitones) % 12 for pc in order}
    for first in sorted(moved):
        candidate = [(first + step) % 12 for step in shape]
        if set(candidate) == moved:
            return ".".join(str(pc) for pc in candidate)
    raise ValueError(f"{token!r} is not a chord token in normal order")


# --------------------------------------------------------------------------- the encoding


class ReferenceEncoding(Encoding):
    """The reference notebook's encoding, through the functions above."""

    registration = registry.REFERENCE

    def encode(self, data: bytes, parts: str = "all") -> list[str]:
        check_parts(parts)
        return tokens_from_midi_bytes(data, parts)  # type: ignore[arg-type]

    def decode(self, tokens: Sequence[str]) -> bytes:
        return midi_bytes_from_tokens(tokens)

    def transpose_token(self, token: str, semitones: int) -> str | None:
        return transpose_token(token, semitones)

    def note_events(self, tokens: Sequence[str]) -> list[NoteEvent]:
        step = STEP_QUARTER_LENGTH
        return [
            NoteEvent(index * step, step, number)
            for index, token in enumerate(tokens)
            for number in token_midi_pitches(token)
        ]

    def bar_starts(self, tokens: Sequence[str]) -> list[int]:
        """Every 8th token: a token every half quarter note, 4 quarter notes a bar (the reference
        writes no bars; its pieces start on a beat)."""
        per_bar = round(4 / STEP_QUARTER_LENGTH)
        return list(range(0, len(tokens), per_bar))

    @property
    def config_hash(self) -> str:
        return stable_hash({"token_format": self.token_format, "step": STEP_QUARTER_LENGTH})

    @property
    def versions(self) -> dict[str, str]:
        return {"music21": music21.__version__}
