"""The Standard MIDI File container: the check every encoding runs before parsing, and its error.

Both encodings (:mod:`preprocessing.notes`, music21; :mod:`preprocessing.remi`, symusic) read the
same files and must turn the same bad files into the same kind of error, so the error class and the
structural check live here, free of either parser. Pure; standard library only.
"""

from __future__ import annotations


class MidiParseError(ValueError):
    """A file that could not be read as MIDI; the message carries the parser's reason."""


def check_midi_container(data: bytes) -> None:
    """Raise :class:`MidiParseError` unless every chunk the header promises is there in full.

    music21 reads a truncated file without complaint and returns the notes before the cut, and
    symusic reads a file whose header declares more tracks than it holds; either would put half a
    piece into the dataset unnoticed. The container makes the check cheap: the header declares the
    number of tracks, and every chunk declares its length.
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
