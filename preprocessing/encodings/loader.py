"""Building an encoding by name, or from the files a data or model folder saved.

:func:`get` builds an encoding with its built-in configuration (what preprocessing uses);
:func:`load` rebuilds it from the files a folder holds (bytes through any file layer, so ``gs://``
works) and refuses one whose configuration hash differs from the one recorded; :func:`describe` is
what a preprocessing output records of it. Each implementation's module is imported only when its
encoding is asked for (:mod:`preprocessing.encodings.registry` says where it lives), so choosing
REMI never imports music21 and choosing the reference never imports MidiTok.
"""

from __future__ import annotations

import importlib

from preprocessing.encodings import registry
from preprocessing.encodings.base import Encoding, Reader
from preprocessing.encodings.registry import EncodingError


def encoding_class(name: str) -> type[Encoding]:
    """The class behind ``name``, its module imported only now."""
    registration = registry.by_name(name)
    cls = getattr(importlib.import_module(registration.module), registration.class_name)
    if cls.registration is not registration:
        raise EncodingError(f"{registration.implementation} is not registered as {name!r}")
    return cls


def get(name: str) -> Encoding:
    """A fresh encoding with its built-in configuration (what preprocessing uses)."""
    return encoding_class(name)()


def describe(name: str) -> dict:
    """What a preprocessing output records of the encoding ``name``: its token format,
    configuration hash, library versions and saved files (plain values, so the last Beam step
    needs no encoder)."""
    chosen = get(name)
    return {
        "token_format": chosen.token_format,
        "config_hash": chosen.config_hash,
        "versions": dict(chosen.versions),
        "saved_files": chosen.saved_files(),
    }


def load(name: str, read: Reader, expected_hash: str | None = None) -> Encoding:
    """The encoding a data or model folder saved, refused with one line when its hash differs.

    ``read(file_name)`` returns the bytes of one of the registration's ``saved_files``; whatever it
    raises for a missing file becomes an :class:`EncodingError`.
    """
    cls = encoding_class(name)
    try:
        encoding = cls.from_saved(read)
    except EncodingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any file layer's error, or a corrupt file
        files = ", ".join(cls.registration.saved_files) or "its files"
        reason = f"{type(exc).__name__}: {exc}"
        raise EncodingError(f"cannot read the {name} encoding's {files}: {reason}") from exc
    check_config_hash(name, encoding, expected_hash)
    return encoding


def check_config_hash(name: str, encoding: Encoding, expected_hash: str | None) -> None:
    """Refuse, in one line, an encoding whose configuration hash is not the recorded one (None:
    nothing recorded)."""
    if expected_hash is not None and encoding.config_hash != expected_hash:
        raise EncodingError(
            f"the saved {name} tokenizer has configuration hash {encoding.config_hash}, but the "
            f"manifest records {expected_hash}: the tokens were made with another configuration"
        )
