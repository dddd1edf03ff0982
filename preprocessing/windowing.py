"""Pure functions that turn token sequences into training windows and the spans that store them
(and back); no Beam, no TensorFlow, no music21.

Each piece is windowed on its own (a window and its target always come from the same piece), and
pieces, not windows, are split between training and validation by a stable hash of their path. Why
that differs from the reference notebook: ``docs/ENCODING.md``. A piece is stored as
:func:`spans`, which hold each of its windows exactly once; :func:`reassemble` puts pieces back
together from spans or windows read in any order.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence

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


def spans(ids: Sequence[int], sequence_length: int, stride: int) -> list[list[int]]:
    """A piece's records in the ``spans`` layout: ``ids[k * stride : k * stride + sequence_length +
    stride]`` for each of the :func:`window_count` (at ``stride``) values of ``k``, the last one cut
    at the piece's end.

    Every window of ``sequence_length + 1`` tokens at stride 1 (``windows(ids, sequence_length)``)
    lies in exactly one span: the one starting at ``stride * (start // stride)``. So each token is
    stored about ``(sequence_length + stride) / stride`` times instead of ``sequence_length + 1``
    times, a piece's tail is never lost, and :func:`windows` of each span gives back the windows
    exactly. Consecutive spans overlap by ``sequence_length`` tokens (:func:`reassemble` chains
    them).
    """
    count = window_count(len(ids), sequence_length, stride)
    length = sequence_length + stride
    return [list(ids[k * stride : k * stride + length]) for k in range(count)]


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


# --------------------------------------------------------------------- reassembly


def reassemble(sequences: Sequence[Sequence[int]], overlap: int) -> list[list[int]]:
    """The token-id sequences that ``sequences`` (spans, or windows of inputs and target) were cut
    from, in any order.

    Consecutive spans of a piece overlap by ``sequence_length`` tokens; windows of ``L + 1`` tokens
    at stride s by ``L + 1 - s`` (:attr:`preprocessing.records.Manifest.record_overlap`). Sequences
    are chained wherever one's first ``overlap`` tokens are another's last ones, so the order the
    shards hold them in does not matter. A chain starts where more sequences begin with those tokens
    than end with them (where an Eulerian path starts), so a piece that loops back on itself still
    comes back whole. Every sequence is used exactly once. Where a piece repeats more than
    ``overlap`` tokens the chaining may take either branch (a stretch may then differ from its
    piece, or a piece come back in two stretches, always with the same sequences). With ``overlap``
    0 or less each stays alone.
    """
    full = [tuple(int(i) for i in sequence) for sequence in sequences]
    if overlap <= 0:
        return [list(sequence) for sequence in full]
    unused: dict[tuple, deque[int]] = defaultdict(deque)
    for index, sequence in enumerate(full):
        unused[sequence[:overlap]].append(index)
    ending = Counter(sequence[-overlap:] for sequence in full)
    starts = sorted(
        i
        for key, indices in unused.items()
        for i in list(indices)[: max(0, len(indices) - ending[key])]
    )
    used = [False] * len(full)
    pieces: list[list[int]] = []
    for first in starts + list(range(len(full))):  # then whatever a cycle left over
        if used[first]:
            continue
        used[first] = True
        unused[full[first][:overlap]].remove(first)
        piece = list(full[first])
        while unused.get(tuple(piece[-overlap:])):
            following = unused[tuple(piece[-overlap:])].popleft()
            used[following] = True
            piece.extend(full[following][overlap:])
        pieces.append(piece)
    return pieces
