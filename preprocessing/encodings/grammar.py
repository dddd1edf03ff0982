"""Sampling grammars: which vocabulary ids may come next after a token sequence.

A network puts some probability on successions an encoding cannot decode; sampling under the
encoding's grammar (``Encoding.grammar``) masks them. :class:`FreeGrammar` is the grammar of an
encoding whose every token decodes on its own (the reference's): sampling then needs no mask at
all. REMI's is :mod:`preprocessing.encodings.remi_grammar`. Pure: numpy only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np


class GrammarState(ABC):
    """Where a token sequence stands: which vocabulary ids may come next."""

    @abstractmethod
    def push(self, token: str) -> None:
        """Advance by one token (any token: replaying a primer never fails)."""

    @abstractmethod
    def allowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary ids: True where the id may come next. Never all
        False."""

    def allowed_within(self, remaining: int) -> np.ndarray:
        """:meth:`allowed`, less the ids after which the sequence could not be finished (see
        :attr:`finished`) within ``remaining`` tokens, this one included; :meth:`allowed` where that
        leaves nothing. Sampling asks this, so a piece of a given length ends whole."""
        return self.allowed()

    @property
    def finished(self) -> bool:
        """True when the sequence so far decodes without dropping its last tokens."""
        return True


class Grammar(ABC):
    """The successions an encoding allows, over a data-derived vocabulary (its ids are the
    positions)."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab: tuple[str, ...] = tuple(vocab)

    @abstractmethod
    def start(self, tokens: Iterable[str] = ()) -> GrammarState:
        """The state after ``tokens`` (e.g. a primer); push each sampled token into it."""

    def mask(self, tokens: Sequence[str]) -> np.ndarray:
        """The ids allowed after ``tokens``: a pure function of the tokens so far."""
        return self.start(tokens).allowed()

    def lead_in(self, primer: Sequence[str]) -> list[str]:
        """The primer's last tokens that a piece continuing ``primer`` needs in front of it to
        decode on its own (REMI: a trailing ``Pitch``, whose ``Duration`` is the first generated
        token)."""
        return []

    @property
    def free(self) -> bool:
        """True when every token may follow every token: sampling then needs no mask at all."""
        return False


class _FreeState(GrammarState):
    def __init__(self, size: int):
        self._all = np.ones(size, dtype=bool)

    def push(self, token: str) -> None:
        pass

    def allowed(self) -> np.ndarray:
        return self._all.copy()


class FreeGrammar(Grammar):
    """Every token may follow every token (the reference encoding: each token decodes on its
    own)."""

    def start(self, tokens: Iterable[str] = ()) -> GrammarState:
        return _FreeState(len(self.vocab))

    @property
    def free(self) -> bool:
        return True
