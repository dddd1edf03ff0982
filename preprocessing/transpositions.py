"""Transposition at read time (``--transpose K``): the vocabulary closed under shifts, the table the
trainer maps ids with, and what cannot be moved. Pure functions; no Beam, no TensorFlow.

The pipeline stores every piece once, untransposed. For ``--transpose K`` it adds to the vocabulary
every token a training piece's token becomes under each shift in -K..K (:func:`moves`), and
writes ``transpositions.json`` (:func:`table_to_json`): for each shift, the id each token id becomes
(-1 where the encoding cannot move the token: a note would leave its pitch range). The trainer draws
one shift per training window and per epoch, maps the window's ids through the shift's row, and
keeps the window unshifted when one of its tokens cannot be moved (:func:`refusals` counts how
often that can happen). Validation windows are never moved.

Moving a piece token by token is the same as moving the piece: both encodings transpose one token at
a time (:meth:`preprocessing.encodings.base.Encoding.transpose_token`), so a window moved through
the table holds exactly the tokens of the transposed piece's window (with REMI's learned tokens,
``--bpe-vocab``: exactly the moved music, each learned token's pitches moved, though not always in
the tokens its learned vocabulary would choose for the moved file).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

MAX_TRANSPOSE = 12
"""``--transpose`` at most an octave: beyond it, a chord token (pitch classes) repeats a shift
already made."""

Mover = Callable[[str, int], "str | None"]
"""An encoding's ``transpose_token``: the token moved by a number of semitones, None when it
cannot be."""


def semitone_shifts(transpose: int) -> tuple[int, ...]:
    """The shifts of ``--transpose K`` besides the piece itself: -K … -1, +1 … +K."""
    if not 0 <= transpose <= MAX_TRANSPOSE:
        raise ValueError(
            f"transpose must be between 0 and {MAX_TRANSPOSE} semitones, not {transpose}"
        )
    return tuple(range(-transpose, 0)) + tuple(range(1, transpose + 1))


def moves(
    tokens: Iterable[str], shifts: Sequence[int], move: Mover
) -> dict[int, dict[str, str | None]]:
    """What each distinct token of ``tokens`` becomes under each shift (None: it cannot move), the
    one place the encoding is asked: :func:`moved_tokens` and :func:`refusals` read it."""
    distinct = set(tokens)
    return {shift: {token: move(token, shift) for token in distinct} for shift in shifts}


def moved_tokens(moved: Mapping[int, Mapping[str, str | None]]) -> set[str]:
    """Every token the :func:`moves` give (the vocabulary must hold them)."""
    found = {token for by_token in moved.values() for token in by_token.values()}
    found.discard(None)
    return found  # type: ignore[return-value]


def refusals(
    tokens: Sequence[str], sequence_length: int, moved: Mapping[int, Mapping[str, str | None]]
) -> Counter:
    """How much of one training piece a shift cannot move, over its windows of ``sequence_length +
    1`` tokens at stride 1 (``moved``: the piece's :func:`moves`): ``windows_not_always_movable``
    (windows holding a token that some shift cannot move) and ``shifts_refused`` (the (window,
    shift) pairs that cannot be moved; when the trainer draws one of those, the window trains
    unshifted)."""
    windows = len(tokens) - sequence_length
    if windows <= 0 or not moved:
        return Counter()
    any_refused = [False] * windows
    refused = 0
    for by_token in moved.values():
        stuck = {token for token, becomes in by_token.items() if becomes is None}
        if not stuck:
            continue
        # prefix sums of unmovable tokens: a window [j, j + L] is refused when it holds one
        before = [0]
        for token in tokens:
            before.append(before[-1] + (token in stuck))
        for start in range(windows):
            if before[start + sequence_length + 1] > before[start]:
                refused += 1
                any_refused[start] = True
    return Counter(windows_not_always_movable=sum(any_refused), shifts_refused=refused)


def unmoved_share(counts: Mapping[str, int], transpose: int) -> float:
    """The share of the trainer's (training window, shift) draws, shift 0 included, that leave a
    window unmoved because it holds a token the drawn shift cannot move (a manifest's counts)."""
    draws = counts.get("train_windows", 0) * (2 * transpose + 1)
    return counts.get("shifts_refused", 0) / max(1, draws)


def table(vocab: Sequence[str], shifts: Sequence[int], move: Mover) -> list[list[int]]:
    """One row per shift: the id each vocabulary id becomes, or -1 (the token cannot be moved, or
    becomes a token outside the vocabulary: only a token no training piece holds can)."""
    index = {token: i for i, token in enumerate(vocab)}
    rows = []
    for shift in shifts:
        moved = (move(token, shift) for token in vocab)
        rows.append([-1 if token is None else index.get(token, -1) for token in moved])
    return rows


def table_to_json(transpose: int, vocab_hash: str, rows: Sequence[Sequence[int]]) -> str:
    """``transpositions.json``: the shifts, the vocabulary it maps (by hash) and the rows."""
    return json.dumps(
        {
            "transpose": transpose,
            "vocab_hash": vocab_hash,
            "shifts": list(semitone_shifts(transpose)),
            "ids": [list(row) for row in rows],
        },
        separators=(",", ":"),
    )


def table_hash(text: str | bytes) -> str:
    """A short content hash of ``transpositions.json``, recorded in the manifest."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def table_problem(doc: Any, transpose: int, vocab_hash: str, vocab_size: int) -> str | None:
    """What makes a parsed ``transpositions.json`` unusable with this vocabulary and ``--transpose``
    (the end of a sentence), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("ids"), list):
        return 'is not {"transpose": K, "vocab_hash": ..., "shifts": [...], "ids": [[...], ...]}'
    if doc.get("vocab_hash") != vocab_hash:
        return (
            f"maps the ids of another vocabulary (hash {doc.get('vocab_hash')!r}, not {vocab_hash})"
        )
    shifts = list(semitone_shifts(transpose))
    if doc.get("transpose") != transpose or doc.get("shifts") != shifts:
        return f"holds the shifts {doc.get('shifts')!r}, not those of --transpose {transpose}"
    rows = doc["ids"]
    if len(rows) != len(shifts):
        return f"holds {len(rows)} rows for {len(shifts)} shifts"
    for shift, row in zip(shifts, rows):
        if not isinstance(row, list) or len(row) != vocab_size:
            return f"maps {len(row) if isinstance(row, list) else 'no'} ids for shift {shift:+d}, not the vocabulary's {vocab_size}"
        if not all(isinstance(i, int) and -1 <= i < vocab_size for i in row):
            return f"maps an id for shift {shift:+d} outside the vocabulary of {vocab_size} tokens"
    return None


def table_from_json(text: str | bytes) -> Any:
    """The parsed document (checked by :func:`table_problem`); raises ``ValueError`` for bad
    JSON."""
    return json.loads(text)
