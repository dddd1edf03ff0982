"""Which REMI token may come next: the grammar that keeps every sampled REMI sequence decodable.

A network trained on REMI still puts some probability on successions MidiTok cannot decode: a
``Pitch`` without its ``Duration`` is dropped, a ``Position`` earlier in the bar than the one before
sends time backwards. Sampling with this mask makes every generated sequence one that MidiTok's
``tokens_errors`` scores 0 and that decodes with no token dropped. Two layers:

* **Token types**: MidiTok's own graph of which type may follow which
  (``REMI._create_token_types_graph``, handed in as ``tokenizer.tokens_types_graph``), narrowed in
  one place: after a ``Rest`` the next note needs its ``Position`` (``Rest`` → ``Pitch`` is in the
  graph, but REMI's encoder never writes it and ``tokens_errors`` then compares positions with a
  stale one). At the very start, a piece opens with ``Bar``, ``Position`` or ``Rest``.
* **Values**, as ``tokens_errors`` checks them and MidiTok's decoder moves time: within a bar a
  ``Position`` must be later than the last one; after a ``Rest`` it must not be earlier than where
  the rest ended; a ``Pitch`` may not repeat at one position (the encoder removes duplicated notes).

The state replays the decoder's clock (bar, bar start, current time, end of the last note) in
positions, for 4/4 bars without time-signature tokens, which is the configuration of
:mod:`preprocessing.encodings.remi`.

A learned token (``--bpe-vocab``, :mod:`preprocessing.encodings.remi_bpe`) is written as the base
tokens it stands for joined by :data:`SEPARATOR` (``Pitch_60+Duration_1.0.4``). It is allowed
exactly when its base tokens are allowed one after the other from the current state, and pushing it
pushes each of them. Pure: numpy only, no MidiTok import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from preprocessing.encodings.grammar import Grammar, GrammarState

SEPARATOR = "+"
"""Joins the base tokens of a learned token's string; no MidiTok token of this configuration holds
it."""
START = "<start>"
LEARNED = "<learned>"
PITCHES = 128  # MIDI pitches: a learned token's Pitch values index a table of this width
TYPES = ("Bar", "Position", "Pitch", "Duration", "Rest")
"""The token types this grammar knows; any other token (``PAD``, ...) is never allowed."""


def time_value(value: str, positions_per_beat: int) -> int:
    """``Duration_1.2.4`` / ``Rest_1.2.4`` (1 beat + 2/4 beat) in positions: 6 at 4 positions per
    beat."""
    beats, part, resolution = (int(x) for x in value.split("."))
    positions, remainder = divmod((beats * resolution + part) * positions_per_beat, resolution)
    if remainder:
        raise ValueError(
            f"{value} is not a whole number of positions at {positions_per_beat} per beat"
        )
    return positions


def base_tokens(tokens: Iterable[str]) -> list[str]:
    """The base tokens that ``tokens`` stand for: each learned token's own, in order; a base token
    is itself."""
    return [part for token in tokens for part in token.split(SEPARATOR)]


def parsed(token: str, positions_per_beat: int) -> tuple[str, int]:
    """A base token's type and number: a ``Position``'s or ``Pitch``'s value, a ``Duration``'s or
    ``Rest``'s length in positions, -1 for any other."""
    kind, _, value = token.partition("_")
    if kind in ("Position", "Pitch"):
        return kind, int(value)
    if kind in ("Duration", "Rest"):
        return kind, time_value(value, positions_per_beat)
    return kind, -1


def entry_conditions(
    parts: Sequence[tuple[str, int]], successors: Mapping[str, frozenset[str]]
) -> tuple[bool, int, set[int], bool]:
    """What a learned token (its base tokens, :func:`parsed`) asks of the state it follows, besides
    its first type: ``(coherent, position, pitches, after_rest)``.

    ``coherent``: its own successions are allowed (types; within the token after its own ``Bar``
    or ``Position``, positions that go forward and no pitch twice at one). ``position``: the value
    of its first ``Position`` before any ``Bar`` or ``Rest`` of its own, which must not be earlier
    than the state's next allowed one (-1: none). ``pitches``: its ``Pitch`` values before its first
    ``Bar``, ``Position`` or ``Rest``, which must not sound at the state's position yet.
    ``after_rest``: a ``Position`` follows a ``Rest`` of its own, so the state's clock decides.
    """
    position, pitches, after_rest = -1, set(), False
    segment, own_min, own_pitches = "entry", 0, set()  # whose position the base tokens are at
    for index, (kind, number) in enumerate(parts):
        if index and kind not in successors.get(parts[index - 1][0], ()):
            return False, -1, set(), False
        if kind == "Bar":
            segment, own_min, own_pitches = "own", 0, set()
        elif kind == "Rest":
            segment = "rest"
        elif kind == "Position":
            if segment == "entry":
                position = number
            elif segment == "own" and number < own_min:
                return False, -1, set(), False
            after_rest |= segment == "rest"
            segment, own_min, own_pitches = "own", number + 1, set()
        elif kind == "Pitch":
            seen = pitches if segment == "entry" else own_pitches
            if number in seen:
                return False, -1, set(), False
            seen.add(number)
    return True, position, pitches, after_rest


class RemiGrammar(Grammar):
    """The REMI grammar over a vocabulary (any subset of the tokenizer's, in id order; with learned
    tokens, the base tokens they stand for are in it too, as the pipeline makes it)."""

    def __init__(
        self,
        vocab: Sequence[str],
        type_graph: Mapping[str, Iterable[str]],
        positions_per_beat: int,
        beats_per_bar: int = 4,
    ):
        super().__init__(vocab)
        self.positions_per_beat = positions_per_beat
        self.positions_per_bar = positions_per_beat * beats_per_bar
        size = len(self.vocab)
        # each token's base tokens as (type, number): one for a base token, more for a learned one
        self.parts = [
            tuple(parsed(part, positions_per_beat) for part in token.split(SEPARATOR))
            for token in self.vocab
        ]
        self.parts_of = dict(zip(self.vocab, self.parts))
        self.type_of = [parts[0][0] if len(parts) == 1 else LEARNED for parts in self.parts]
        self.is_type = {
            kind: np.array([t == kind for t in self.type_of], dtype=bool) for kind in TYPES
        }
        # Position or Pitch value; Duration or Rest length (-1 for a learned token)
        self.number = np.array(
            [parts[0][1] if len(parts) == 1 else -1 for parts in self.parts], dtype=np.int64
        )
        missing = [
            kind
            for kind in ("Bar", "Position", "Pitch", "Duration")
            if not self.is_type[kind].any()
        ]
        if missing:
            raise ValueError(
                f"a REMI vocabulary needs Bar, Position, Pitch and Duration tokens; this one has no "
                f"{', '.join(missing)}"
            )
        self.successors: dict[str, frozenset[str]] = {
            kind: frozenset(type_graph.get(kind, ())) & set(TYPES) for kind in TYPES
        }
        self.successors["Rest"] -= {"Pitch"}
        self.successors[START] = frozenset({"Bar", "Position", "Rest"})
        # Precomputed, so that a sampling step is a copy and a few stores: the types each type
        # allows, the Position ids too early for each first allowed position, the id of each pitch.
        self.type_mask = {
            kind: np.logical_or.reduce([self.is_type[k] for k in follow] + [np.zeros(size, bool)])
            for kind, follow in self.successors.items()
        }
        self.too_early = np.stack(
            [
                self.is_type["Position"] & (self.number < first)
                for first in range(self.positions_per_bar + 1)
            ]
        )
        self.pitch_id = {int(self.number[i]): i for i in np.flatnonzero(self.is_type["Pitch"])}
        # Tokens a type still needs after it before the piece decodes whole: a Pitch its Duration, a
        # Position (which only a Pitch may follow) a Pitch and a Duration. Index: the tokens left.
        # A learned token needs what its last base token needs (base tokens can always finish).
        ends = {kind: np.array([p[-1][0] == kind for p in self.parts], bool) for kind in TYPES}
        needs = {"Pitch": 1, "Position": 2}
        self.unfinishable = [
            np.logical_or.reduce(
                [ends[kind] for kind, n in needs.items() if n >= left] + [np.zeros(size, bool)]
            )
            for left in range(max(needs.values()) + 1)
        ]
        self._learned_tables()

    def _learned_tables(self) -> None:
        """What each learned token asks of the state it follows (:func:`entry_conditions`), as
        arrays: most are then allowed or refused by a few vector operations per step."""
        self.learned = np.array([i for i, t in enumerate(self.type_of) if t == LEARNED], np.int64)
        conditions = [entry_conditions(self.parts[i], self.successors) for i in self.learned]
        firsts = [self.parts[i][0][0] for i in self.learned]
        none = np.zeros(len(firsts), bool)
        self.first_type_mask = {
            kind: np.array([first in follow for first in firsts], bool) if firsts else none
            for kind, follow in self.successors.items()
        }
        self.coherent = np.array([c[0] for c in conditions], bool)
        self.entry_position = np.array([c[1] for c in conditions], np.int64)
        self.entry_pitch = np.zeros((len(firsts), PITCHES), bool)
        for j, condition in enumerate(conditions):
            self.entry_pitch[j, sorted(condition[2])] = True
        self.after_rest = np.array([c[3] for c in conditions], bool)

    def start(self, tokens: Iterable[str] = ()) -> RemiState:
        state = RemiState(self)
        for token in tokens:
            state.push(token)
        return state

    def lead_in(self, primer: Sequence[str]) -> list[str]:
        """A primer that ends on a ``Pitch`` makes the first generated token its ``Duration``:
        the piece keeps that ``Pitch`` in front, or the ``Duration`` would decode as nothing (of a
        learned token that ends on a ``Pitch``, that base token alone)."""
        last = primer[-1].split(SEPARATOR)[-1] if primer else ""
        return [last] if last.startswith("Pitch_") else []


class RemiState(GrammarState):
    """MidiTok's decoding clock, in positions, plus what ``tokens_errors`` remembers."""

    def __init__(self, grammar: RemiGrammar):
        self.grammar = grammar
        self.previous = START
        self.bar = -1  # the decoder's current_bar
        self.bar_start = 0  # tick_at_current_bar
        self.time = 0  # current_tick
        self.note_end = 0  # previous_note_end
        self.min_position = 0  # the first Position value allowed next
        self.pitches: set[int] = set()  # pitches already played at the current position

    def push(self, token: str) -> None:
        parts = self.grammar.parts_of.get(token)
        if parts is None:  # a token outside the vocabulary (a primer's lead-in)
            per_beat = self.grammar.positions_per_beat
            parts = tuple(parsed(part, per_beat) for part in token.split(SEPARATOR))
        for kind, number in parts:
            self.advance(kind, number)

    def advance(self, kind: str, number: int) -> None:
        """Read one base token, given as its type and number (:func:`parsed`)."""
        bar_length = self.grammar.positions_per_bar
        if kind == "Bar":
            self.bar += 1
            if self.bar > 0:
                self.time = self.bar_start + bar_length
            self.bar_start = self.time
            self.min_position, self.pitches = 0, set()
        elif kind == "Rest":
            self.time = max(self.note_end, self.time) + number
            real_bar = self.time // bar_length
            if real_bar > self.bar:
                self.bar = max(self.bar, 0)
                self.bar_start += (real_bar - self.bar) * bar_length
                self.bar = real_bar
            self.min_position, self.pitches = self.time - self.bar_start, set()
        elif kind == "Position":
            self.bar = max(self.bar, 0)
            self.time = self.bar_start + number
            self.min_position, self.pitches = number + 1, set()
        elif kind == "Pitch":
            self.pitches.add(number)
        elif kind == "Duration":
            self.note_end = max(self.note_end, self.time + number)
        self.previous = kind if kind in TYPES else START

    def admits(self, kind: str, number: int) -> bool:
        """Whether one base token may come next: the rules :meth:`allowed` applies to ids."""
        if kind not in self.grammar.successors[self.previous]:
            return False
        if self.previous == "Pitch":  # the value rules never apply after a Pitch
            return True
        if kind == "Position":
            return number >= self.min_position
        return kind != "Pitch" or number not in self.pitches

    def allowed(self) -> np.ndarray:
        g = self.grammar
        mask = g.type_mask[self.previous].copy()
        # the value rules concern Position and Pitch, never after a Pitch
        if self.previous != "Pitch":
            mask &= ~g.too_early[min(self.min_position, g.positions_per_bar)]
            for pitch in self.pitches:
                if pitch in g.pitch_id:
                    mask[g.pitch_id[pitch]] = False
        if g.learned.size:
            mask[g.learned] = self._learned_allowed()
        # cannot happen with Bar in the vocabulary; never leave the sampler nothing
        if not mask.any():
            mask |= g.is_type["Bar"]
        return mask

    def _learned_allowed(self) -> np.ndarray:
        """Over the learned tokens: True where each of its base tokens is allowed in turn. The
        conditions on this state are vector operations; only a token with a ``Position`` after
        its own ``Rest`` (whose end depends on the clock) is pushed through a copy of it."""
        g = self.grammar
        ok = g.first_type_mask[self.previous] & g.coherent
        ok &= (g.entry_position < 0) | (g.entry_position >= self.min_position)
        pitches = [pitch for pitch in self.pitches if 0 <= pitch < PITCHES]
        if pitches:
            ok &= ~g.entry_pitch[:, pitches].any(axis=1)
        for j in np.flatnonzero(ok & g.after_rest):
            ok[j] = self._admits_after_first(g.parts[g.learned[j]])
        return ok

    def _admits_after_first(self, parts: Sequence[tuple[str, int]]) -> bool:
        """Whether a token's base tokens after its first (allowed) one are allowed in turn."""
        state = RemiState.__new__(RemiState)
        state.__dict__.update(self.__dict__)
        state.pitches = set(self.pitches)
        state.advance(*parts[0])
        for kind, number in parts[1:]:
            if not state.admits(kind, number):
                return False
            state.advance(kind, number)
        return True

    def allowed_within(self, remaining: int) -> np.ndarray:
        """No ``Position`` among the last two tokens and no ``Pitch`` as the last (of a learned
        token: as its last base token): a piece of a fixed length then ends after a whole note (or
        a ``Bar``/``Rest``), never on a ``Pitch`` without its ``Duration``."""
        mask = self.allowed()
        if remaining < len(self.grammar.unfinishable):
            narrowed = mask & ~self.grammar.unfinishable[max(remaining, 0)]
            if narrowed.any():
                return narrowed
        return mask

    @property
    def finished(self) -> bool:
        return self.previous != "Pitch"
