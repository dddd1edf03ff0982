"""``evaluate --continue``: continue each held-out piece from its own opening, compare with the real
continuation.

Unprimed pieces start from primers in whatever keys ``model/primers.json`` holds, and are compared
with the validation pieces as two sets, so a key the model did not choose weighs as much as a
melody it did. Here each validation piece gives its first ``--opening-bars`` bars (4/4 bars of
four quarter notes: both encodings count bars so, :meth:`Encoding.bar_starts`) as the primer; the
model composes as many tokens as the piece holds after them (at most ``--length``), under the same
sampling flags as ``generate``; and the composed continuation is compared with the real one piece
by piece (:mod:`trainer.continuation_measures`): same opening, same key, same length in tokens.

Both continuations are measured as notes: the whole piece (opening and continuation) is decoded by
the encoding, and the notes that start at or after the opening's end are kept, their onsets counted
from it. A piece whose tokens end before its opening does is skipped and counted; when every piece
is, :func:`continuation_plan` refuses in one line before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from preprocessing.encodings.base import Encoding, NoteEvent
from preprocessing.records import DataError
from trainer import continuation_measures, measures

QUARTERS_PER_BAR = 4
DEFAULT_OPENING_BARS = 4


@dataclass(frozen=True)
class Continuation:
    """One validation piece cut at the end of its opening."""

    index: int  # the piece's place among the validation pieces
    opening: list[str]
    real: list[str]  # the real continuation, cut to at most --length tokens


def opening_length(tokens: Sequence[str], encoding: Encoding, bars: int) -> int | None:
    """The number of tokens of the piece's first ``bars`` bars; None when the piece has no token
    after them."""
    starts = encoding.bar_starts(tokens)  # indices of tokens: a bar that starts holds one
    return starts[bars] if len(starts) > bars else None


def continuation_plan(
    pieces: Sequence[Sequence[str]], encoding: Encoding, bars: int, length: int, limit: int
) -> tuple[list[Continuation], int]:
    """The first ``limit`` validation pieces long enough to continue, each cut after its opening,
    and how many were too short; a :class:`DataError` of one line when none is long enough."""
    plan: list[Continuation] = []
    short = 0
    for index, tokens in enumerate(pieces):
        cut = opening_length(tokens, encoding, bars)
        if cut is None:
            short += 1
            continue
        if len(plan) < limit:
            plan.append(Continuation(index, list(tokens[:cut]), list(tokens[cut : cut + length])))
    if not plan:
        longest = max((len(encoding.bar_starts(tokens)) for tokens in pieces), default=0)
        raise DataError(
            f"--continue needs a validation piece longer than its opening of {bars} bars, and none "
            f"of the {len(pieces)} is (the longest has {longest} bars): lower --opening-bars"
        )
    return plan, short


def events_after(
    tokens: Sequence[str], encoding: Encoding, start_quarters: float
) -> list[NoteEvent]:
    """The notes of ``tokens`` (decoded by the encoding) that start at or after ``start_quarters``,
    with their onsets counted from there."""
    return [
        NoteEvent(max(0.0, event.onset - start_quarters), event.duration, event.pitch)
        for event in encoding.note_events(tokens)
        if event.onset >= start_quarters - 1e-9
    ]


def not_applicable(encoding_name: str) -> dict[str, str]:
    """Measure or overlap name → why it says nothing of a continuation in this encoding (reported
    as None): the unprimed measures' reasons, and for the reference its fixed rhythm."""
    reasons = dict(measures.not_applicable(encoding_name))
    if encoding_name == "reference":
        fixed = (
            "the reference encoding plays every token as a note of half a quarter note, one every "
            "half quarter note, so both sides always agree (1)"
        )
        for name in ("note_length_histogram_overlap", "ioi_histogram_overlap"):
            reasons[name] = fixed
        reasons["groove_consistency"] = (
            "the reference encoding has an onset every half quarter note, so every bar has the "
            "same onsets (1)"
        )
    return reasons


def compare_continuations(
    plan: Sequence[Continuation], composed: Sequence[Sequence[str]], encoding: Encoding, bars: int
) -> dict:
    """Each composed continuation against its real one (``per_piece``) and the means
    (``summary``)."""
    start = bars * QUARTERS_PER_BAR
    skip = not_applicable(encoding.name)
    per_piece = []
    for item, continuation in zip(plan, composed):
        pair = continuation_measures.compare_pair(
            events_after(item.opening + list(continuation), encoding, start),
            events_after(item.opening + item.real, encoding, start),
            skip=skip,
        )
        pair.update({name: None for name in continuation_measures.OVERLAPS if name in skip})
        per_piece.append(
            {
                "piece": item.index,
                "opening_tokens": len(item.opening),
                "continuation_tokens": len(item.real),
                **pair,
                "composed_tokens": list(continuation),
            }
        )
    return {
        "summary": continuation_measures.summarize(per_piece),
        "per_piece": per_piece,
        "not_applicable": skip,
    }


def compose_continuations(composer, plan: Sequence[Continuation], vocab, settings: dict):
    """Each piece's continuation, composed from its opening as ``generate`` composes (one piece at a
    time: openings and continuations differ in length), as tokens."""
    import numpy as np

    from trainer.sampling import piece_tokens

    index = {token: i for i, token in enumerate(vocab)}
    composed = []
    for number, item in enumerate(plan):
        primer = np.array([[index[token] for token in item.opening]], np.int64)
        seed = None if settings.get("seed") is None else settings["seed"] + number
        ids = composer.generate(primer, len(item.real), **{**settings, "seed": seed})
        composed.append(piece_tokens(composer.grammar, vocab, primer[0], ids[0]))
    return composed
