"""The Standard MIDI File container: the check every encoding runs before parsing, and its error.

Both encodings (:mod:`~preprocessing.encodings.reference`, music21;
:mod:`~preprocessing.encodings.remi`, symusic) read the same files and must turn the same bad files
into the same kind of error, so the error class and the structural check live here, free of either
parser. Pure; standard library only.
"""

from __future__ import annotations


class MidiParseError(ValueError):
    """A file that could not be read as MIDI; the message carries the parser's reason."""


SEPARATE_SEQUENCES = 2
"""Format 2: each track is an independent sequence (a pattern of its own, with its own time)."""


def with_every_track(data: bytes) -> tuple[bytes, int]:
    """Check the container and return the bytes a parser should read, and how many tracks the
    header left out; raise :class:`MidiParseError` for a file that cannot be read whole.

    music21 reads a truncated file without complaint and returns the notes before the cut, and
    symusic reads a file whose header declares more tracks than it holds; each would put part of
    a piece into the dataset unnoticed. The container makes the check cheap: the header declares
    the number of tracks, and every chunk declares its length. A file that holds *more* whole track
    chunks than its header declares (real files do: music21's own ``test04.mid`` declares 18 and
    holds 19) is read whole: the returned bytes declare every track, since both parsers read only
    the declared ones. Bytes after the last track that do not form a whole track chunk (padding,
    junk some writers leave) are allowed, as both parsers skip them. Format 2 (independent
    sequences) is refused by name: its tracks are separate patterns that neither encoding can
    play as one piece (music21 cannot read them; symusic would sound them at once).
    """
    if not data:
        raise MidiParseError("empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        raise MidiParseError(f"not a MIDI file: starts with {data[:4]!r}, not b'MThd'")
    if len(data) < 14:
        raise MidiParseError(f"truncated: {len(data)} bytes, shorter than a MIDI header")
    if int.from_bytes(data[8:10], "big") == SEPARATE_SEQUENCES:
        raise MidiParseError(
            "format 2 (independent sequences) is not supported: its tracks are separate "
            "patterns, not one piece"
        )
    declared_tracks = int.from_bytes(data[10:12], "big")
    position = _declared_tracks_end(data, declared_tracks)
    extra = _whole_track_chunks(data, position)
    if extra:
        data = data[:10] + (declared_tracks + extra).to_bytes(2, "big") + data[12:]
    return data, extra


def check_midi_container(data: bytes) -> None:
    """Raise :class:`MidiParseError` for a file that :func:`with_every_track` cannot read whole."""
    with_every_track(data)


def undeclared_tracks(data: bytes) -> int:
    """How many whole tracks a file holds beyond the ones its header declares (0 for a file whose
    container is broken: its parse says why)."""
    try:
        return with_every_track(data)[1]
    except MidiParseError:
        return 0


def _declared_tracks_end(data: bytes, declared_tracks: int) -> int:
    """The byte after the last declared track; :class:`MidiParseError` if one is cut off."""
    position, tracks = 8 + int.from_bytes(data[4:8], "big"), 0
    while position < len(data) and tracks < declared_tracks:
        if position + 8 > len(data):
            raise MidiParseError(f"truncated: a chunk header is cut off at byte {position}")
        kind, length = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "big"),
        )
        if position + 8 + length > len(data):
            raise MidiParseError(
                f"truncated: chunk {kind!r} at byte {position} declares {length} bytes, "
                f"{len(data) - position - 8} remain"
            )
        tracks += kind == b"MTrk"  # other chunk types are allowed and skipped, as the standard says
        position += 8 + length
    if tracks < declared_tracks:
        raise MidiParseError(
            f"truncated: the header declares {declared_tracks} tracks, the file holds {tracks}"
        )
    return position


def _whole_track_chunks(data: bytes, position: int) -> int:
    """How many whole ``MTrk`` chunks follow ``position`` (up to the first that is not whole)."""
    count = 0
    while position + 8 <= len(data):
        length = int.from_bytes(data[position + 4 : position + 8], "big")
        if position + 8 + length > len(data):
            break
        count += data[position : position + 4] == b"MTrk"
        position += 8 + length
    return count


MAX_QUARTER_NOTES = 20_000
"""The longest a file may last, in quarter notes: 5,000 bars of 4/4, nearly three hours at 120 beats
a minute. music21's parse time grows faster than a file's length (it builds every bar of a silence
too): one corrupt delta time of 0x0FFFFFFF ticks makes 26,630 quarter notes of rest, about a minute
of parsing for a file whose notes take 0.04 s (``docs/PERFORMANCE.md``)."""


def _variable_length(data: bytes, position: int) -> tuple[int, int]:
    """A MIDI variable-length quantity at ``position``: (value, position after it)."""
    value = 0
    for index in range(position, position + 4):
        value = (value << 7) | (data[index] & 0x7F)
        if data[index] < 0x80:
            return value, index + 1
    raise ValueError("a variable-length quantity longer than 4 bytes")


def track_ticks(track: bytes) -> int:
    """The sum of one track chunk's delta times: its length in ticks, up to a malformed event if
    any."""
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
    """Raise :class:`MidiParseError` for a file longer than :data:`MAX_QUARTER_NOTES`, before
    music21 spends a minute or more on it. Cheap and structural; the pipeline's time budget
    (``--max-seconds-per-file``) remains the guarantee."""
    quarters = midi_length_quarters(data)
    if quarters is not None and quarters > MAX_QUARTER_NOTES:
        raise MidiParseError(
            f"lasts {quarters:,.0f} quarter notes, more than the {MAX_QUARTER_NOTES:,} a file may "
            "(a corrupt delta time?); music21 would take a minute or more to read its silence"
        )
