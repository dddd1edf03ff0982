"""The encodings this version knows: one :class:`Registration` each, and nothing else to edit.

A registration says everything about an encoding that must be known without importing it: the
name ``--encoding`` takes, the token format a manifest records (it changes whenever a token's
meaning does), the files it saves beside ``vocab.json``, and where its class lives. The pipeline's
launcher, the records' reader and the ``model/`` folder read these plain values, so choosing REMI
never imports music21 and choosing the reference never imports MidiTok.

Adding an encoding: a module in this package with an :class:`~preprocessing.encodings.base.Encoding`
subclass whose ``registration`` is its entry here, and a module-level ``tokens_from_midi_bytes(data,
parts)`` (what a parse child runs), then one entry in :data:`REGISTRATIONS`.

Pure data: imports nothing of this project, so every module may read it.
"""

from __future__ import annotations

from dataclasses import dataclass


class EncodingError(ValueError):
    """An unknown encoding, or a saved configuration that is missing, unreadable or does not match.

    The one error of the encodings package; it lives at the package's lowest layer so that every
    module of it can raise it."""


@dataclass(frozen=True)
class Registration:
    """One encoding, as far as it can be known without importing it."""

    name: str
    """The ``--encoding`` choice."""
    token_format: str
    """What ``manifest.json`` records as the token encoding."""
    saved_files: tuple[str, ...]
    """The files the encoding writes beside ``vocab.json`` (copied into ``model/`` too)."""
    implementation: str
    """``module:Class`` of the :class:`~preprocessing.encodings.base.Encoding` subclass."""

    @property
    def module(self) -> str:
        return self.implementation.partition(":")[0]

    @property
    def class_name(self) -> str:
        return self.implementation.partition(":")[2]

    @property
    def parse_function(self) -> str:
        """What a parse child runs, by name: the module's ``tokens_from_midi_bytes``. The child
        imports the module (and with it music21 or MidiTok) when it starts, never the Beam
        worker."""
        return f"{self.module}:tokens_from_midi_bytes"


REFERENCE = Registration(
    name="reference",
    token_format="music21-pitch-normalorder-v1",
    saved_files=(),
    implementation="preprocessing.encodings.reference:ReferenceEncoding",
)
REMI = Registration(
    name="remi",
    token_format="miditok-remi-v1",
    saved_files=("tokenizer.json",),
    implementation="preprocessing.encodings.remi:RemiEncoding",
)

REGISTRATIONS: tuple[Registration, ...] = (REFERENCE, REMI)
"""Every encoding; the first is the default."""

NAMES: tuple[str, ...] = tuple(r.name for r in REGISTRATIONS)
"""The names ``--encoding`` accepts."""
DEFAULT = REGISTRATIONS[0].name
TOKEN_FORMATS: tuple[str, ...] = tuple(r.token_format for r in REGISTRATIONS)
"""The token formats this version reads; a manifest naming any other is refused."""


def by_name(name: str) -> Registration:
    for registration in REGISTRATIONS:
        if registration.name == name:
            return registration
    raise EncodingError(f"unknown encoding {name!r}: choose one of {', '.join(NAMES)}")


def by_token_format(token_format: str) -> Registration:
    for registration in REGISTRATIONS:
        if registration.token_format == token_format:
            return registration
    raise EncodingError(
        f"the token encoding {token_format!r} is not one this version reads "
        f"(it reads {', '.join(TOKEN_FORMATS)})"
    )


def every_saved_file() -> tuple[str, ...]:
    """The saved files of every encoding: a run removes the others' from its output folder (a
    reference run into a folder that held a REMI output leaves no ``tokenizer.json``)."""
    return tuple(sorted({name for r in REGISTRATIONS for name in r.saved_files}))
