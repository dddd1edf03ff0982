"""Token encodings: one interface, two implementations, chosen by name.

An :class:`Encoding` turns the bytes of a MIDI file into token strings and token strings back into
MIDI bytes, and carries everything else that depends on what a token means: transposition by
semitones (augmentation), the grammar that masks impossible next tokens while sampling, the notes a
piano roll draws, and the files that pin its configuration beside ``vocab.json``. The pipeline, the
windowing, the trainer and generation are meant to call only this interface:

* ``reference`` (:class:`ReferenceEncoding`): the reference notebook's pitches and chords, via
  :mod:`preprocessing.notes`, the one owner of music21 code. It has no configuration to save.
* ``remi`` (:class:`preprocessing.remi.RemiEncoding`): MidiTok's REMI over symusic, with rhythm;
  it saves MidiTok's own tokenizer file.

:func:`get` builds an encoding for preprocessing; :func:`load` rebuilds it from the files a data or
model folder holds (bytes through any file layer, so ``gs://`` works) and refuses one whose
configuration hash differs from the one recorded. Neither implementation is imported until asked
for, so choosing REMI never imports music21 and choosing the reference never imports MidiTok.
No TensorFlow, no Beam. What each encoding keeps and drops: ``docs/ENCODING.md``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence

import numpy as np

ENCODINGS: tuple[str, ...] = ("reference", "remi")
"""The names ``--encoding`` accepts; the first is the default."""
DEFAULT_ENCODING = "reference"

PARTS_MODES: tuple[str, ...] = ("all", "first")
"""Which notes of a file to read: every non-percussion part merged (default), or the first one."""

Reader = Callable[[str], bytes]
"""Reads one file of a data or model folder by name, e.g. ``lambda name: read_bytes(join(folder, name))``."""


class EncodingError(ValueError):
    """An unknown encoding, or a saved configuration that is missing, unreadable or does not match."""


def check_parts(parts: str) -> None:
    if parts not in PARTS_MODES:
        raise ValueError(f"parts must be one of {PARTS_MODES}, not {parts!r}")


def stable_hash(document: object) -> str:
    """A short hash of a JSON-able document that does not depend on key order or the process."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class NoteEvent:
    """One sounding note as a decoded piece plays it: onset and duration in quarter notes, MIDI pitch."""

    onset: float
    duration: float
    pitch: int


# --------------------------------------------------------------------------- grammars


class GrammarState(ABC):
    """Where a token sequence stands: which vocabulary ids may come next."""

    @abstractmethod
    def push(self, token: str) -> None:
        """Advance by one token (any token: replaying a primer never fails)."""

    @abstractmethod
    def allowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary ids: True where the id may come next. Never all False."""

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
    """The successions an encoding allows, over a data-derived vocabulary (its ids are the positions)."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab: tuple[str, ...] = tuple(vocab)

    @abstractmethod
    def start(self, tokens: Iterable[str] = ()) -> GrammarState:
        """The state after ``tokens`` (e.g. a primer); push each sampled token into it."""

    def mask(self, tokens: Sequence[str]) -> np.ndarray:
        """The ids allowed after ``tokens``: a pure function of the tokens so far."""
        return self.start(tokens).allowed()

    def lead_in(self, primer: Sequence[str]) -> list[str]:
        """The primer's last tokens that a piece continuing ``primer`` needs in front of it to decode on
        its own (REMI: a trailing ``Pitch``, whose ``Duration`` is the first generated token)."""
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
    """Every token may follow every token (the reference encoding: each token decodes on its own)."""

    def start(self, tokens: Iterable[str] = ()) -> GrammarState:
        return _FreeState(len(self.vocab))

    @property
    def free(self) -> bool:
        return True


# --------------------------------------------------------------------------- the interface


class Encoding(ABC):
    """MIDI bytes ⇄ token strings, and what else depends on the meaning of a token."""

    name: ClassVar[str]
    """The ``--encoding`` choice."""
    token_format: ClassVar[str]
    """What ``manifest.json`` records as the token encoding: changes whenever a token's meaning does."""
    saved_file_names: ClassVar[tuple[str, ...]] = ()
    """The files :meth:`saved_files` writes beside ``vocab.json`` and :func:`load` reads back."""

    @abstractmethod
    def encode(self, data: bytes, parts: str = "all") -> list[str]:
        """The tokens of one MIDI file; raises :class:`preprocessing.midi_container.MidiParseError`
        (one readable line, the parser's own message in it) for a file that is not MIDI."""

    @abstractmethod
    def decode(self, tokens: Sequence[str]) -> bytes:
        """A MIDI file playing ``tokens``; ``encode(decode(encode(f))) == encode(f)``."""

    @abstractmethod
    def transpose(self, tokens: Sequence[str], semitones: int) -> list[str] | None:
        """The tokens of the same piece moved by ``semitones``, exactly what encoding the transposed
        MIDI file gives; None when a note would leave the encoding's pitch range."""

    @abstractmethod
    def note_events(self, tokens: Sequence[str]) -> list[NoteEvent]:
        """The notes :meth:`decode` writes, in onset order (for piano rolls and audio previews)."""

    def grammar(self, vocab: Sequence[str]) -> Grammar:
        """The sampling grammar over ``vocab`` (the sorted distinct tokens of the data)."""
        return FreeGrammar(vocab)

    def saved_files(self) -> dict[str, bytes]:
        """File name → bytes, to be written beside ``vocab.json`` and copied into ``model/``."""
        return {}

    @classmethod
    def from_saved(cls, read: Reader) -> "Encoding":
        """The encoding that :meth:`saved_files` described; ``read`` gives a saved file's bytes."""
        return cls()

    @property
    @abstractmethod
    def config_hash(self) -> str:
        """A stable hash of everything that decides the tokens (recorded in the manifest, checked on load)."""

    @property
    @abstractmethod
    def versions(self) -> dict[str, str]:
        """The libraries that make the tokens, with their versions (recorded in the manifest)."""


class ReferenceEncoding(Encoding):
    """The reference notebook's encoding; every call goes to :mod:`preprocessing.notes`."""

    name = "reference"
    token_format = "music21-pitch-normalorder-v1"

    def encode(self, data: bytes, parts: str = "all") -> list[str]:
        from preprocessing import notes

        check_parts(parts)
        return notes.tokens_from_midi_bytes(data, parts)  # type: ignore[arg-type]

    def decode(self, tokens: Sequence[str]) -> bytes:
        from preprocessing import notes

        return notes.midi_bytes_from_tokens(tokens)

    def transpose(self, tokens: Sequence[str], semitones: int) -> list[str] | None:
        from preprocessing import notes

        return notes.transpose_tokens(tokens, semitones)

    def note_events(self, tokens: Sequence[str]) -> list[NoteEvent]:
        from preprocessing import notes

        step = notes.STEP_QUARTER_LENGTH
        return [NoteEvent(index * step, step, midi) for index, token in enumerate(tokens)
                for midi in notes.token_midi_pitches(token)]

    @property
    def config_hash(self) -> str:
        from preprocessing import notes

        return stable_hash({"token_format": self.token_format, "step": notes.STEP_QUARTER_LENGTH})

    @property
    def versions(self) -> dict[str, str]:
        import music21

        return {"music21": music21.__version__}


# --------------------------------------------------------------------------- the registry

_IMPLEMENTATIONS = {"reference": (__name__, "ReferenceEncoding"), "remi": ("preprocessing.remi", "RemiEncoding")}

TOKEN_FORMATS: dict[str, str] = {"music21-pitch-normalorder-v1": "reference", "miditok-remi-v1": "remi"}
"""Each encoding's ``token_format`` (what a manifest records) → its name, without importing either."""

SAVED_FILE_NAMES: dict[str, tuple[str, ...]] = {"reference": (), "remi": ("tokenizer.json",)}
"""Each encoding's ``saved_file_names``, without importing it: a run removes the others' files from its
output folder (a reference run into a folder that held a REMI output leaves no ``tokenizer.json``)."""

PARSE_FUNCTIONS: dict[str, str] = {
    "reference": "preprocessing.notes:tokens_from_midi_bytes",
    "remi": "preprocessing.remi:tokens_from_midi_bytes",
}
"""What a parse child runs, by name, per encoding: its module imports the parser (music21 or MidiTok)
when the child starts, never in the Beam worker that calls it."""


def encoding_class(name: str) -> type[Encoding]:
    """The class behind ``name``, its module imported only now."""
    if name not in _IMPLEMENTATIONS:
        raise EncodingError(f"unknown encoding {name!r}: choose one of {', '.join(ENCODINGS)}")
    module, attribute = _IMPLEMENTATIONS[name]
    return getattr(importlib.import_module(module), attribute)


def get(name: str) -> Encoding:
    """A fresh encoding with its built-in configuration (what preprocessing uses)."""
    return encoding_class(name)()


def describe(name: str) -> dict:
    """What a preprocessing output records of the encoding ``name``: its token format, configuration
    hash, library versions and saved files (plain values, so the last Beam step needs no encoder)."""
    chosen = get(name)
    return {"token_format": chosen.token_format, "config_hash": chosen.config_hash,
            "versions": dict(chosen.versions), "saved_files": chosen.saved_files()}


def load(name: str, read: Reader, expected_hash: str | None = None) -> Encoding:
    """The encoding a data or model folder saved, refused with one line when its hash differs.

    ``read(file_name)`` returns the bytes of one of ``encoding_class(name).saved_file_names``;
    whatever it raises for a missing file becomes an :class:`EncodingError`.
    """
    cls = encoding_class(name)
    try:
        encoding = cls.from_saved(read)
    except EncodingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any file layer's error, or a corrupt file
        files = ", ".join(cls.saved_file_names) or "its files"
        raise EncodingError(f"cannot read the {name} encoding's {files}: {type(exc).__name__}: {exc}") from exc
    if expected_hash is not None and encoding.config_hash != expected_hash:
        raise EncodingError(
            f"the saved {name} tokenizer has configuration hash {encoding.config_hash}, but the manifest "
            f"records {expected_hash}: the tokens were made with another configuration"
        )
    return encoding
