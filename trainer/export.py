"""The ``model/`` folder: everything generation needs, written by the trainer and loaded by
generation.

::

    model/  model.keras     the trained network (Keras 3 format)
            vocab.json      the token strings in id order     } copied from the data directory,
            manifest.json   sequence length, encoding, ...    } so the folder is read with the
            tokenizer.json  (REMI) the encoding's saved files } records' own checks
            primers.json    a few data windows: generation's default primers, as the reference
                            primes with a random window of the data

Loading reads the manifest and vocabulary with :func:`preprocessing.reader.read_output` (the same
reader and vocabulary-hash check as the data directory), so the two can never drift apart.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from preprocessing import reader, records
from preprocessing.encodings import registry
from preprocessing.records import DataError, join

MODEL_FILE = "model.keras"
PRIMERS_FILE = "primers.json"
PRIMER_WINDOWS = 16
"""Windows exported to ``primers.json``: generation's default primers."""


def save_model(model, path: str) -> None:
    """``model.save`` to ``path`` (local, gs://, ram://), making its folder first."""
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    model.save(path)


def model_dir_files(manifest: records.Manifest) -> tuple[str, ...]:
    """The files copied from the data directory, the manifest last: the vocabulary, then the
    encoding's saved files (the registration's ``saved_files``; REMI's ``tokenizer.json``, which
    generation decodes with and :func:`preprocessing.reader.read_output` checks against the
    manifest's hash), then the manifest."""
    saved = registry.by_token_format(manifest.encoding).saved_files
    return (records.VOCAB_FILE, *saved, records.MANIFEST_FILE)


def write_model_dir(model_dir: str, data_dir: str, primers: np.ndarray, primer_split: str) -> None:
    """The chief's part of the export: vocabulary, the encoding's saved files, manifest and primers
    beside ``model.keras``.

    (``model.keras`` itself is saved by every worker with :func:`save_model`, because saving reads
    distributed variables; only the chief's copy lands here.)
    """
    import tensorflow as tf

    with tf.io.gfile.GFile(join(data_dir, records.MANIFEST_FILE), "r") as f:
        manifest = records.manifest_from_json(f.read())
    for name in model_dir_files(manifest):
        tf.io.gfile.copy(join(data_dir, name), join(model_dir, name), overwrite=True)
    with tf.io.gfile.GFile(join(model_dir, PRIMERS_FILE), "w") as f:
        json.dump({"split": primer_split, "windows": np.asarray(primers).tolist()}, f)


@dataclass
class Bundle:
    """Everything generation needs, as the trainer exports it into ``model/``."""

    model: object  # keras.Model
    vocab: list[str]
    manifest: records.Manifest
    model_dir: str

    @property
    def sequence_length(self) -> int:
        return self.manifest.sequence_length

    @functools.cached_property
    def primers(self) -> list[list[int]]:
        """The windows of ``primers.json``, read and checked when first asked for (a composition
        from ``--primer`` never needs them); :class:`DataError` for a damaged file."""
        return read_primers(self.model_dir, self.sequence_length, len(self.vocab))


def load_bundle(model_dir: str) -> Bundle:
    """Load ``model.keras``, ``vocab.json``, ``manifest.json`` (and ``primers.json`` if present).

    Raises :class:`DataError` with one sentence when the folder is not a model folder, or when its
    vocabulary does not match its manifest.
    """
    import tensorflow as tf

    for name in (MODEL_FILE, records.VOCAB_FILE, records.MANIFEST_FILE):
        if not tf.io.gfile.exists(join(model_dir, name)):
            raise DataError(
                f"{join(model_dir, name)} not found: --model-dir must be a training job's model/ folder"
            )
    manifest, vocab = reader.read_output(model_dir, shards=False)
    return Bundle(load_keras(join(model_dir, MODEL_FILE)), vocab, manifest, model_dir)


PRIMERS_REMEDY = "give a MIDI file with --primer, or export the model again by training it"


def read_primers(model_dir: str, sequence_length: int, vocab_size: int) -> list[list[int]]:
    """The windows of ``primers.json``; none when the folder has no such file.

    Each must be ``sequence_length`` token ids of the model's vocabulary: a file that is not JSON,
    not ``{"windows": [[id, ...], ...]}``, holds no window, a window of another length or an id
    outside the vocabulary is refused in one line (:class:`DataError`) that says which.
    """
    import tensorflow as tf

    path = join(model_dir, PRIMERS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    problem = primers_problem(text, sequence_length, vocab_size)
    if problem:
        raise DataError(f"{path} {problem}; {PRIMERS_REMEDY}")
    return [list(map(int, window)) for window in json.loads(text)["windows"]]


def primers_problem(text: str, sequence_length: int, vocab_size: int) -> str | None:
    """What is wrong with the text of a ``primers.json``, as the end of a sentence; None if
    nothing."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"is not JSON ({exc})"
    windows = document.get("windows") if isinstance(document, dict) else None
    if not isinstance(windows, list):
        return 'is not {"windows": [[token id, ...], ...]} as training writes it'
    if not windows:
        return "holds no windows"
    for index, window in enumerate(windows):
        if not (isinstance(window, list) and all(type(i) is int for i in window)):
            return f"window {index} is not a list of token ids"
        if len(window) != sequence_length:
            return (
                f"window {index} has {len(window)} token ids; the model reads windows of "
                f"{sequence_length}"
            )
        outside = [i for i in window if not 0 <= i < vocab_size]
        if outside:
            return (
                f"window {index} holds the id {outside[0]}, outside the model's vocabulary of "
                f"{vocab_size} tokens"
            )
    return None


def load_keras(path: str):
    """``keras.saving.load_model`` on a local copy (it reads local files; the model may be on
    gs://)."""
    import keras
    import tensorflow as tf

    if "://" not in path:
        return keras.saving.load_model(path, compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        tf.io.gfile.copy(path, local, overwrite=True)
        return keras.saving.load_model(local, compile=False)
