"""The encoding interface: MIDI bytes ⇄ token strings, and what else depends on what a token means.

An :class:`Encoding` turns the bytes of a MIDI file into token strings and token strings back into
MIDI bytes, and carries everything else that depends on what a token means: transposition by
semitones (augmentation), the grammar that masks impossible next tokens while sampling
(:mod:`preprocessing.encodings.grammar`), the notes a piano roll draws, and the files that pin its
configuration beside ``vocab.json``. The pipeline, the windowing, the trainer and generation call
only this interface; each encoding is a module of this package
(:mod:`~preprocessing.encodings.reference`, :mod:`~preprocessing.encodings.remi`) registered once
in :mod:`preprocessing.encodings.registry`, and built by :mod:`preprocessing.encodings.loader`.
No TensorFlow, no Beam. What each encoding keeps and drops: ``docs/ENCODING.md``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from preprocessing.encodings.grammar import FreeGrammar, Grammar
from preprocessing.encodings.registry import Registration

PARTS_MODES: tuple[str, ...] = ("all", "first")
"""Which notes of a file to read: every non-percussion part merged (default), or the first one."""

Reader = Callable[[str], bytes]
"""Reads one file of a data or model folder by name, e.g.
``lambda name: read_bytes(join(folder, name))``."""


def check_parts(parts: str) -> None:
    if parts not in PARTS_MODES:
        raise ValueError(f"parts must be one of {PARTS_MODES}, not {parts!r}")


def stable_hash(document: object) -> str:
    """A short hash of a JSON-able document that does not depend on key order or the process."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class NoteEvent:
    """One sounding note as a decoded piece plays it: onset and duration in quarter notes, MIDI
    pitch."""

    onset: float
    duration: float
    pitch: int


class Encoding(ABC):
    """MIDI bytes ⇄ token strings, and what else depends on the meaning of a token."""

    registration: ClassVar[Registration]
    """The encoding's entry in :data:`preprocessing.encodings.registry.REGISTRATIONS`: its name,
    token format and saved files are written there, once."""

    @property
    def name(self) -> str:
        """The ``--encoding`` choice."""
        return self.registration.name

    @property
    def token_format(self) -> str:
        """What ``manifest.json`` records as the token encoding: changes whenever a token's
        meaning does."""
        return self.registration.token_format

    @abstractmethod
    def encode(self, data: bytes, parts: str = "all") -> list[str]:
        """The tokens of one MIDI file; raises
        :class:`preprocessing.encodings.midi_container.MidiParseError` (one readable line, the
        parser's own message in it) for a file that is not MIDI."""

    @abstractmethod
    def decode(self, tokens: Sequence[str]) -> bytes:
        """A MIDI file playing ``tokens``; ``encode(decode(encode(f))) == encode(f)``."""

    @abstractmethod
    def transpose_token(self, token: str, semitones: int) -> str | None:
        """The token moved by ``semitones`` (itself when it holds no pitch); None when a note would
        leave the encoding's pitch range. Both encodings move a piece one token at a time, which
        is what lets the trainer transpose through a table of ids
        (:mod:`preprocessing.transpositions`)."""

    def transpose(self, tokens: Sequence[str], semitones: int) -> list[str] | None:
        """The tokens of the same piece moved by ``semitones``, exactly what encoding the transposed
        MIDI file gives; None when a note would leave the encoding's pitch range."""
        moved = [self.transpose_token(token, semitones) for token in tokens]
        return None if None in moved else moved  # type: ignore[return-value]

    @abstractmethod
    def note_events(self, tokens: Sequence[str]) -> list[NoteEvent]:
        """The notes :meth:`decode` writes, in onset order (for piano rolls and audio previews)."""

    @abstractmethod
    def bar_starts(self, tokens: Sequence[str]) -> list[int]:
        """The index of the token that begins each bar of 4/4 (four quarter notes), in order, the
        first at 0: where a piece can be cut into an opening and its continuation."""

    def grammar(self, vocab: Sequence[str]) -> Grammar:
        """The sampling grammar over ``vocab`` (the sorted distinct tokens of the data)."""
        return FreeGrammar(vocab)

    def saved_files(self) -> dict[str, bytes]:
        """File name → bytes (the registration's ``saved_files``), written beside ``vocab.json`` and
        copied into ``model/``."""
        return {}

    @classmethod
    def from_saved(cls, read: Reader) -> Encoding:
        """The encoding that :meth:`saved_files` described; ``read`` gives a saved file's bytes."""
        return cls()

    def base_tokens(self, tokens: Sequence[str]) -> list[str]:
        """The base tokens that ``tokens`` stand for: themselves, unless the encoding learned a
        vocabulary whose tokens each stand for several (REMI's ``--bpe-vocab``)."""
        return list(tokens)

    @property
    def learned_hash(self) -> str:
        """A hash of the vocabulary the encoding learned from data (REMI's ``--bpe-vocab``), ""
        when it learned none; :attr:`config_hash` covers it too."""
        return ""

    @property
    @abstractmethod
    def config_hash(self) -> str:
        """A stable hash of everything that decides the tokens (recorded in the manifest, checked
        on load)."""

    @property
    @abstractmethod
    def versions(self) -> dict[str, str]:
        """The libraries that make the tokens, with their versions (recorded in the manifest)."""
