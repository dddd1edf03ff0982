"""Music ⇄ tokens: the reference notebook's encoding, and its inverse.

A token is what the reference's ``get_notes`` appends: a single note is ``str(note.pitch)``
(``E-4``, ``C#5``), a chord is its ``normalOrder`` joined with dots (``4.7.11``). Rests are not tokens.

Two ways to choose the notes of a piece (``parts``):

* ``"first"`` reproduces the reference exactly: ``partitionByInstrument(score).parts[0].recurse()``,
  falling back to ``score.flatten().notes`` when there are no instrument parts. On multi-track files
  this keeps one instrument and drops the rest of the music.
* ``"all"`` (the default) takes the notes of every non-percussion part, in time order, and merges
  everything that starts at the same offset into one token: one distinct pitch stays a note token,
  several become a chord token. Percussion (MIDI channel 10) never yields pitched tokens.

Pure functions over music21 objects; no Beam, no TensorFlow. Where and why encoding and decoding
differ from the reference notebook: ``docs/ENCODING.md``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Literal, Sequence

from music21 import chord, converter, instrument, midi, note, pitch, stream

PartsMode = Literal["all", "first"]
PARTS_MODES: tuple[str, ...] = ("all", "first")

STEP_QUARTER_LENGTH = 0.5
"""The reference's predict step writes one token every half quarter note."""


class MidiParseError(ValueError):
    """A file that music21 could not read as MIDI; the message carries music21's reason."""


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
    """True when the part plays on MIDI channel 10 (index 9) or holds an unpitched-percussion instrument."""
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


def check_midi_container(data: bytes) -> None:
    """Raise :class:`MidiParseError` unless every chunk the header promises is there in full.

    music21 reads a truncated file without complaint and returns the notes before the cut, which
    would put half a piece into the dataset unnoticed. The Standard MIDI File container makes the
    check cheap: the header declares the number of tracks, and every chunk declares its length.
    """
    if not data:
        raise MidiParseError("empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        raise MidiParseError(f"not a MIDI file: starts with {data[:4]!r}, not b'MThd'")
    if len(data) < 14:
        raise MidiParseError(f"truncated: {len(data)} bytes, shorter than a MIDI header")
    header_length = int.from_bytes(data[4:8], "big")
    declared_tracks = int.from_bytes(data[10:12], "big")
    position, tracks = 8 + header_length, 0
    while position < len(data) and tracks < declared_tracks:
        if position + 8 > len(data):
            raise MidiParseError(f"truncated: a chunk header is cut off at byte {position}")
        kind, length = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "big")
        if position + 8 + length > len(data):
            raise MidiParseError(
                f"truncated: chunk {kind!r} at byte {position} declares {length} bytes, "
                f"{len(data) - position - 8} remain"
            )
        tracks += kind == b"MTrk"  # other chunk types are allowed and skipped, as the standard says
        position += 8 + length
    if tracks < declared_tracks:
        raise MidiParseError(f"truncated: the header declares {declared_tracks} tracks, the file holds {tracks}")


MAX_QUARTER_NOTES = 20_000
"""The longest a file may last, in quarter notes: 5,000 bars of 4/4, nearly three hours at 120 beats
a minute. music21's parse time grows faster than a file's length (it builds every bar of a silence
too): one corrupt delta time of 0x0FFFFFFF ticks makes 26,630 quarter notes of rest, about a minute
of parsing for a file whose notes take 0.04 s (``docs/PERFORMANCE.md``)."""


def _variable_length(data: bytes, position: int) -> tuple[int, int]:
    """A MIDI variable-length quantity at ``position``: (value, position after it)."""
    value = 0
    for position in range(position, position + 4):
        value = (value << 7) | (data[position] & 0x7F)
        if data[position] < 0x80:
            return value, position + 1
    raise ValueError("a variable-length quantity longer than 4 bytes")


def track_ticks(track: bytes) -> int:
    """The sum of one track chunk's delta times: its length in ticks, up to a malformed event if any."""
    ticks, position, status = 0, 0, 0
    try:
        while position < len(track):
            byte = track[position]
            if byte < 0x80:  # most delta times fit in one byte
                ticks, position = ticks + byte, position + 1
            else:
                delta, position = _variable_length(track, position)
                ticks += delta
            byte = track[position]
            if byte == 0xFF:  # meta event: type, length, data
                length, position = _variable_length(track, position + 2)
                position += length
            elif byte in (0xF0, 0xF7):  # system exclusive: length, data
                length, position = _variable_length(track, position + 1)
                position += length
            elif byte >= 0xF0 or (byte < 0x80 and not status):
                break  # not an event a track may hold: music21 will say what is wrong
            else:
                if byte >= 0x80:
                    status, position = byte, position + 1  # else running status: data bytes follow
                position += 1 if status & 0xF0 in (0xC0, 0xD0) else 2
    except (IndexError, ValueError):
        pass  # cut off inside an event: the length so far
    return ticks


def midi_length_quarters(data: bytes) -> float | None:
    """The longest track's length in quarter notes, from the header's ticks per quarter note and the
    tracks' delta times alone (no music21); None when the header counts time in SMPTE frames."""
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000 or division == 0:
        return None
    view, longest = memoryview(data), 0
    position = 8 + int.from_bytes(data[4:8], "big")
    while position + 8 <= len(data):
        length = int.from_bytes(data[position + 4 : position + 8], "big")
        if data[position : position + 4] == b"MTrk":
            longest = max(longest, track_ticks(view[position + 8 : position + 8 + length]))
        position += 8 + length
    return longest / division


def check_midi_length(data: bytes) -> None:
    """Raise :class:`MidiParseError` for a file longer than :data:`MAX_QUARTER_NOTES`, before music21
    spends a minute or more on it. Cheap and structural; the pipeline's time budget
    (``--max-seconds-per-file``) remains the guarantee."""
    quarters = midi_length_quarters(data)
    if quarters is not None and quarters > MAX_QUARTER_NOTES:
        raise MidiParseError(
            f"lasts {quarters:,.0f} quarter notes, more than the {MAX_QUARTER_NOTES:,} a file may "
            "(a corrupt delta time?); music21 would take a minute or more to read its silence"
        )


def parse_midi_bytes(data: bytes) -> stream.Score:
    """Parse MIDI bytes with music21, as ``converter.parse(path)`` does for a ``.mid`` file.

    Parsing from bytes never consults music21's on-disk parse cache, so neither results nor timings
    depend on earlier runs; ``forceSource=True`` says so explicitly.
    """
    check_midi_container(data)
    check_midi_length(data)
    try:
        return converter.parseData(data, format="midi", forceSource=True)
    except Exception as exc:  # noqa: BLE001 - music21 raises many types for broken files
        raise MidiParseError(f"music21 could not parse it: {type(exc).__name__}: {exc}") from exc


def tokens_from_midi_bytes(data: bytes, parts: PartsMode = "all") -> list[str]:
    """Tokens of one MIDI file's bytes; raises :class:`MidiParseError` for a file that is not MIDI."""
    score = parse_midi_bytes(data)
    try:
        return tokens_from_score(score, parts)
    except Exception as exc:  # noqa: BLE001 - a structurally odd score is a bad file, not a crash
        raise MidiParseError(f"music21 parsed it but its notes could not be read: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- decoding


def is_chord_token(token: str) -> bool:
    """Chord tokens are pitch-class numbers joined by dots (``0``, ``4.7.11``); note tokens are names."""
    return "." in token or token.isdigit()


def token_midi_pitches(token: str) -> list[int]:
    """The MIDI pitch numbers that :func:`element_from_token` writes for ``token`` (for piano rolls
    and audio previews, which need numbers, not music21 objects)."""
    if is_chord_token(token):
        classes = [int(pc) for pc in token.split(".")]
        pitches = [60 + pc for pc in classes]
        return pitches + [72 + classes[0]] if len(classes) == 1 else pitches
    return [pitch.Pitch(token).midi]


def element_from_token(token: str, offset: float, duration: float = STEP_QUARTER_LENGTH) -> note.Note | chord.Chord:
    """The reference's predict step for one token, changed only so that every token reads back as itself.

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
    """A piano stream playing ``tokens`` one every ``step`` quarter lengths (the reference's output)."""
    output = stream.Stream()
    output.insert(0, instrument.Piano())
    for index, token in enumerate(tokens):
        output.insert(index * step, element_from_token(token, index * step, step))
    return output


def midi_bytes_from_tokens(tokens: Sequence[str], step: float = STEP_QUARTER_LENGTH) -> bytes:
    """The MIDI file (as bytes) that :func:`stream_from_tokens` describes."""
    return midi.translate.streamToMidiFile(stream_from_tokens(tokens, step)).writestr()
