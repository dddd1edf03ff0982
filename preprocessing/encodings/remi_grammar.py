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
:mod:`preprocessing.encodings.remi`. Pure: numpy only, no MidiTok import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from preprocessing.encodings.grammar import Grammar, GrammarState

START = "<start>"
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


class RemiGrammar(Grammar):
    """The REMI grammar over a vocabulary (any subset of the tokenizer's, in id order)."""

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
        self.type_of = [token.split("_", 1)[0] for token in self.vocab]
        self.is_type = {
            kind: np.array([t == kind for t in self.type_of], dtype=bool) for kind in TYPES
        }
        # Position or Pitch value; Duration or Rest length
        self.number = np.full(size, -1, dtype=np.int64)
        for index, token in enumerate(self.vocab):
            kind, _, value = token.partition("_")
            if kind in ("Position", "Pitch"):
                self.number[index] = int(value)
            elif kind in ("Duration", "Rest"):
                self.number[index] = time_value(value, positions_per_beat)
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
        needs = {"Pitch": 1, "Position": 2}
        self.unfinishable = [
            np.logical_or.reduce(
                [self.is_type[kind] for kind, n in needs.items() if n >= left]
                + [np.zeros(size, bool)]
            )
            for left in range(max(needs.values()) + 1)
        ]

    def start(self, tokens: Iterable[str] = ()) -> RemiState:
        state = RemiState(self)
        for token in tokens:
            state.push(token)
        return state

    def lead_in(self, primer: Sequence[str]) -> list[str]:
        """A primer that ends on a ``Pitch`` makes the first generated token its ``Duration``:
        the piece keeps that ``Pitch`` in front, or the ``Duration`` would decode as nothing."""
        return list(primer[-1:]) if primer and primer[-1].startswith("Pitch_") else []


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
        kind, _, value = token.partition("_")
        bar_length = self.grammar.positions_per_bar
        if kind == "Bar":
            self.bar += 1
            if self.bar > 0:
                self.time = self.bar_start + bar_length
            self.bar_start = self.time
            self.min_position, self.pitches = 0, set()
        elif kind == "Rest":
            rest = time_value(value, self.grammar.positions_per_beat)
            self.time = max(self.note_end, self.time) + rest
            real_bar = self.time // bar_length
            if real_bar > self.bar:
                self.bar = max(self.bar, 0)
                self.bar_start += (real_bar - self.bar) * bar_length
                self.bar = real_bar
            self.min_position, self.pitches = self.time - self.bar_start, set()
        elif kind == "Position":
            self.bar = max(self.bar, 0)
            self.time = self.bar_start + int(value)
            self.min_position, self.pitches = int(value) + 1, set()
        elif kind == "Pitch":
            self.pitches.add(int(value))
        elif kind == "Duration":
            self.note_end = max(
                self.note_end, self.time + time_value(value, self.grammar.positions_per_beat)
            )
        self.previous = kind if kind in TYPES else START

    def allowed(self) -> np.ndarray:
        g = self.grammar
        mask = g.type_mask[self.previous].copy()
        # the value rules concern Position and Pitch, never after a Pitch
        if self.previous != "Pitch":
            mask &= ~g.too_early[min(self.min_position, g.positions_per_bar)]
            for pitch in self.pitches:
                if pitch in g.pitch_id:
                    mask[g.pitch_id[pitch]] = False
        # cannot happen with Bar in the vocabulary; never leave the sampler nothing
        if not mask.any():
            mask |= g.is_type["Bar"]
        return mask

    def allowed_within(self, remaining: int) -> np.ndarray:
        """No ``Position`` among the last two tokens and no ``Pitch`` as the last: a piece of a
        fixed length then ends after a whole note (or a ``Bar``/``Rest``), never on a ``Pitch``
        without its ``Duration``."""
        mask = self.allowed()
        if remaining < len(self.grammar.unfinishable):
            narrowed = mask & ~self.grammar.unfinishable[max(remaining, 0)]
            if narrowed.any():
                return narrowed
        return mask

    @property
    def finished(self) -> bool:
        return self.previous != "Pitch"
