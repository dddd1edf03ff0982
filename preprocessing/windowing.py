"""Pure functions that turn token sequences into training windows; no Beam, no TensorFlow, no
music21.

Each piece is windowed on its own (a window and its target always come from the same piece), and
pieces, not windows, are split between training and validation by a stable hash of their path. Why
that differs from the reference notebook: ``docs/ENCODING.md``. Transposed copies (``--transpose``)
are made of training pieces only, after the split, with the encoding's own ``transpose``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from preprocessing.records import TRAIN, VALIDATION


def window_count(num_tokens: int, sequence_length: int, stride: int = 1) -> int:
    """How many windows :func:`windows` yields for a piece of ``num_tokens`` tokens.

    Equal to ``len(range(0, num_tokens - sequence_length, stride))``: at stride 1 that is
    ``max(0, num_tokens - sequence_length)``.
    """
    if sequence_length < 1 or stride < 1:
        raise ValueError("sequence_length and stride must be at least 1")
    span = num_tokens - sequence_length
    return 0 if span <= 0 else (span + stride - 1) // stride


def windows(
    ids: Sequence[int], sequence_length: int, stride: int = 1
) -> Iterator[tuple[list[int], int]]:
    """Yield ``(inputs, target)``: ``sequence_length`` ids and the id that follows them.

    Same loop as the reference's ``prepare_sequences``
    (``range(0, len - sequence_length, stride)``), applied to one piece.
    """
    if sequence_length < 1 or stride < 1:
        raise ValueError("sequence_length and stride must be at least 1")
    for start in range(0, len(ids) - sequence_length, stride):
        yield list(ids[start : start + sequence_length]), int(ids[start + sequence_length])


def vocabulary(tokens: Iterable[str]) -> list[str]:
    """Sorted distinct tokens: id ``i`` is the ``i``-th token, exactly as the reference's
    ``note_to_int``."""
    return sorted(set(tokens))


def token_ids(tokens: Sequence[str], vocab: Sequence[str] | Mapping[str, int]) -> list[int]:
    """Map tokens to their ids in ``vocab`` (a list in id order, or a prepared token→id mapping)."""
    index = vocab if isinstance(vocab, Mapping) else {token: i for i, token in enumerate(vocab)}
    return [index[token] for token in tokens]


EMPTY = "empty"
TOO_SHORT = "too_short"


def piece_fate(
    num_tokens: int, key: str, sequence_length: int, stride: int, validation_fraction: float
) -> str:
    """Where a piece of ``num_tokens`` tokens goes: :data:`EMPTY` (no notes), :data:`TOO_SHORT` (no
    window fits) or its split (``"train"`` / ``"validation"``, see :func:`split_for`).

    The one classification that both the windows and the manifest's counts use, so they cannot
    disagree.
    """
    if num_tokens == 0:
        return EMPTY
    if window_count(num_tokens, sequence_length, stride) == 0:
        return TOO_SHORT
    return split_for(key, validation_fraction)


def split_for(key: str, validation_fraction: float) -> str:
    """``"train"`` or ``"validation"`` for a piece, from a stable hash of ``key`` (never random
    state).

    ``key`` is the file's path relative to the input folder, so a folder copied from a laptop to
    ``gs://`` splits the same way. Pieces, not windows, are split: no validation window shares a
    piece (and so overlapping tokens) with a training window.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    return VALIDATION if position < validation_fraction else TRAIN


def key_digest(key: str) -> int:
    """A 64-bit hash of a piece's key. Summed (mod 2⁶⁴) over a split's pieces it names the split's
    piece list whatever the order the pieces come in (:func:`pieces_hash`)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def pieces_hash(digest_sum: int) -> str:
    """The manifest's ``validation_pieces_hash``: the sum of the pieces' :func:`key_digest`."""
    return f"{digest_sum % 2**64:016x}"


# --------------------------------------------------------------------- transposition (augmentation)

MAX_TRANSPOSE = 12
"""``--transpose`` at most an octave: beyond it, a chord token (pitch classes) repeats a copy
already made."""


def semitone_shifts(transpose: int) -> tuple[int, ...]:
    """The shifts of ``--transpose K``: −K … −1, +1 … +K (the piece itself, 0, is not a copy)."""
    if not 0 <= transpose <= MAX_TRANSPOSE:
        raise ValueError(
            f"transpose must be between 0 and {MAX_TRANSPOSE} semitones, not {transpose}"
        )
    return tuple(range(-transpose, 0)) + tuple(range(1, transpose + 1))


def transposed_copies(
    tokens: Sequence[str],
    shifts: Sequence[int],
    transpose: Callable[[Sequence[str], int], list[str] | None],
) -> tuple[list[tuple[int, list[str]]], int]:
    """``([(shift, tokens moved by shift), ...], dropped)`` for one piece.

    ``transpose`` is the encoding's own (:meth:`preprocessing.encodings.base.Encoding.transpose`):
    it gives None when a note would leave the encoding's pitch range, and that copy is dropped
    (counted, never an error). Only training pieces are given to this function: the split comes
    first.
    """
    copies, dropped = [], 0
    for shift in shifts:
        moved = transpose(tokens, shift)
        if moved is None:
            dropped += 1
        else:
            copies.append((shift, moved))
    return copies, dropped
