"""The on-disk contract between the preprocessing pipeline and the trainer: the format alone.

One module owns the format so that the writer (the Beam pipeline) and the reader (the trainer's
tf.data input) cannot drift apart: feature names, the example encoder and its parse spec, the shard
file names, and the JSON documents ``vocab.json`` and ``manifest.json``.

It never imports Apache Beam (the trainer image does not install it) and never imports TensorFlow
but in :func:`parse_spec`: examples are encoded with plain protobuf (see :func:`_example_class`).
Serialisation is kept apart from I/O: the ``*_to_json`` / ``*_from_json`` functions are pure, so
the pipeline writes them through Beam's ``FileSystems`` and the trainer reads them through
``tf.io.gfile`` (:mod:`preprocessing.reader`, which checks a finished output), and both see the
same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from preprocessing.encodings import registry

FORMAT_VERSION = 2
"""Bumped whenever the meaning of a record or of a manifest field changes.

2: shard names carry the run's id, and the manifest lists every shard with its byte size, record
count and content hashes (:class:`Shard`), which the trainer checks before its first step. Still 2
with ``encoding_config_hash``, ``encoding_versions``, ``transpose`` (with its counts,
:data:`AUGMENTATION_COUNT_KEYS`) and ``validation_pieces_hash``: optional fields
(:data:`OPTIONAL_FIELDS`), so a manifest written before them reads as before, and a reader before
them ignores them."""

ENCODING = registry.REFERENCE.token_format
"""A manifest's default token format: one written before the encoding was recorded is the
reference's."""

INPUTS_FEATURE = "inputs"
TARGET_FEATURE = "target"

VOCAB_FILE = "vocab.json"
MANIFEST_FILE = "manifest.json"
DEAD_LETTER_FILE = "dead_letter.jsonl"

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)

COMPRESSIONS = ("none", "gzip")

# Keys of Manifest.counts, in the order the summary prints them.
COUNT_KEYS = (
    "files_matched",
    "files_parsed",
    "files_failed",
    "pieces_empty",
    "pieces_too_short",
    "tokens",
    "train_pieces",
    "validation_pieces",
    "train_windows",
    "validation_windows",
)
AUGMENTATION_COUNT_KEYS = ("transposed_pieces", "transpositions_dropped", "windows_augmented")
"""Counts listed only with ``--transpose K`` (K > 0): copies kept (of training pieces), copies
dropped (a note left the pitch range), their windows; ``train_windows`` includes them,
``train_pieces`` does not."""


NOTED_COUNT_KEYS = ("headers_undercounted",)
"""Counts listed only when not 0: files whose header declared fewer tracks than they hold (read
with every track, :func:`preprocessing.encodings.midi_container.with_every_track`)."""


class DataError(ValueError):
    """A data directory that cannot be used as it is; the message says why and what to do."""


RERUN = "run the preprocessing job again into this folder"
"""How a refusal of a damaged output ends: a rerun replaces it, and keeps it readable until it
does."""


def shard_suffix(compression: str) -> str:
    """File name suffix of a shard: ``.tfrecord`` or ``.tfrecord.gz``."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def shard_name(split: str, run_id: str, index: int, total: int, compression: str) -> str:
    """The exact file name of one shard, e.g. ``train-1f2e3d4c-00000-of-00004.tfrecord.gz``.

    The run's id keeps a rerun from overwriting the shards of the finished output it will replace:
    those stay readable until the new manifest lands (see :mod:`preprocessing.files`).
    """
    return f"{split}-{run_id}-{index:05d}-of-{total:05d}{shard_suffix(compression)}"


def shard_pattern(split: str) -> str:
    """A glob for every shard of ``split`` in a folder, of any run (and of format 1, without a
    run id)."""
    return f"{split}-*.tfrecord*"


def tf_compression_type(compression: str) -> str:
    """The ``compression_type`` argument that ``tf.data.TFRecordDataset`` expects."""
    shard_suffix(compression)  # validates
    return "GZIP" if compression == "gzip" else ""


# --------------------------------------------------------------------------- examples


@functools.lru_cache(maxsize=1)
def _example_class():
    """The ``tf.train.Example`` message, declared for plain protobuf (only its int64 branch).

    Same field names and numbers as tensorflow/core/example/{example,feature}.proto, so the bytes
    are a valid ``tf.train.Example`` (tests parse them with ``tf.io.parse_example`` and
    ``tf.train.Example.FromString``) while the writer needs protobuf only, not TensorFlow.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="lstm_composer/tf_example.proto", package="lstm_composer.tf_example", syntax="proto3"
    )
    int64_list = proto.message_type.add(name="Int64List")
    int64_list.field.add(name="value", number=1, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.field.add(
        name="int64_list",
        number=3,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".lstm_composer.tf_example.Int64List",
    )
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(
        name="value",
        number=2,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".lstm_composer.tf_example.Feature",
    )
    features.field.add(
        name="feature",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".lstm_composer.tf_example.Features.FeatureEntry",
    )
    example = proto.message_type.add(name="Example")
    example.field.add(
        name="features",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".lstm_composer.tf_example.Features",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("lstm_composer.tf_example.Example")
    )


def encode_example(inputs: Sequence[int], target: int) -> bytes:
    """Serialise one training window as a ``tf.train.Example``.

    ``inputs`` holds ``sequence_length`` token ids, ``target`` the id of the token that follows.
    """
    example = _example_class()()
    example.features.feature[INPUTS_FEATURE].int64_list.value.extend(int(i) for i in inputs)
    example.features.feature[TARGET_FEATURE].int64_list.value.append(int(target))
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: bytes) -> tuple[list[int], int]:
    """Inverse of :func:`encode_example`, in plain Python (for tests and tools, not for tf.data)."""
    example = _example_class().FromString(serialized)
    feats = example.features.feature
    return list(feats[INPUTS_FEATURE].int64_list.value), int(
        feats[TARGET_FEATURE].int64_list.value[0]
    )


def parse_spec(sequence_length: int) -> dict[str, Any]:
    """The feature spec for ``tf.io.parse_example``: fixed-length int64 inputs and a scalar
    target.

    TensorFlow is imported here, on the reader's side only: the Beam pipeline and its workers
    never import it (a 3-7 s import per worker process, and 600 MB that Dataflow workers would
    install)."""
    import tensorflow as tf

    return {
        INPUTS_FEATURE: tf.io.FixedLenFeature([sequence_length], tf.int64),
        TARGET_FEATURE: tf.io.FixedLenFeature([], tf.int64),
    }


# --------------------------------------------------------------------------- vocabulary


def vocab_to_json(tokens: Sequence[str]) -> str:
    """``vocab.json``: the token strings in id order, as a JSON list."""
    return json.dumps(list(tokens), ensure_ascii=False)


def vocab_from_json(text: str | bytes) -> list[str]:
    tokens = json.loads(text)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError("vocab.json must be a JSON list of token strings")
    if len(set(tokens)) != len(tokens):
        raise DataError("vocab.json lists a token more than once")
    return tokens


def vocab_hash(tokens: Sequence[str]) -> str:
    """A short content hash of the vocabulary, stored in the manifest.

    The trainer compares it with ``vocab.json`` so records made with one vocabulary are never read
    with another (ids would silently mean different notes).
    """
    return hashlib.sha256(vocab_to_json(tokens).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard as the pipeline wrote it: what a reader can check without trusting the file.

    ``size`` and the two hashes are of the bytes on disk (compressed ones for gzip);
    ``edges_sha256`` hashes the first and last :data:`preprocessing.shards.EDGE_BYTES` only, so the
    trainer's default check reads two small ranges of a shard instead of all of it.
    """

    name: str  # relative to the data directory
    size: int
    records: int
    sha256: str
    edges_sha256: str


SHARD_KEYS = tuple(f.name for f in dataclasses.fields(Shard))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What one pipeline run wrote; ``manifest.json`` is written last, so it marks a finished
    output."""

    sequence_length: int
    stride: int
    vocab_size: int
    vocab_hash: str
    parts: str
    compression: str
    validation_fraction: float
    counts: Mapping[str, int]
    train_shards: tuple[Shard, ...]
    validation_shards: tuple[Shard, ...]
    run_id: str = ""
    encoding: str = ENCODING  # the token format (preprocessing.encodings.registry.TOKEN_FORMATS)
    format_version: int = FORMAT_VERSION
    encoding_config_hash: str = ""  # the encoding's config_hash; "" in a manifest written before it
    # libraries that made the tokens
    encoding_versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # --transpose K: training pieces were also copied shifted by -K..-1, +1..+K semitones
    transpose: int = 0
    # which pieces were held out (windowing.pieces_hash); "" in a manifest written before it
    validation_pieces_hash: str = ""

    def shard_entries(self, split: str) -> tuple[Shard, ...]:
        """The shards of ``split`` with their sizes, record counts and hashes."""
        if split == TRAIN:
            return self.train_shards
        if split == VALIDATION:
            return self.validation_shards
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")

    def shards(self, split: str) -> tuple[str, ...]:
        """Shard file names (relative to the data directory) of ``split``."""
        return tuple(shard.name for shard in self.shard_entries(split))

    def windows(self, split: str) -> int:
        return int(self.counts.get(f"{split}_windows", 0))


OPTIONAL_FIELDS = frozenset(
    {"encoding_config_hash", "encoding_versions", "transpose", "validation_pieces_hash"}
)
"""Manifest fields added within format version 2: a manifest without them still reads (defaults)."""


def manifest_to_json(manifest: Manifest) -> str:
    """The manifest's JSON; without augmentation (``transpose`` 0) the same document as before it
    existed."""
    doc = dataclasses.asdict(manifest)  # shards become dicts of SHARD_KEYS
    keys = COUNT_KEYS + AUGMENTATION_COUNT_KEYS if manifest.transpose else COUNT_KEYS
    keys += tuple(k for k in NOTED_COUNT_KEYS if manifest.counts.get(k))
    doc["counts"] = {k: int(manifest.counts.get(k, 0)) for k in keys}
    if not manifest.transpose:
        del doc["transpose"]
    if not manifest.validation_pieces_hash:
        del doc["validation_pieces_hash"]
    return json.dumps(doc, indent=2, sort_keys=True)


def failed_run_report(run_id: str) -> str:
    """The file a run that produced no training windows leaves instead of publishing: its would-be
    manifest and its dead letters (the folder's finished output, if any, stays as it was)."""
    return f"failed-run-{run_id}.json"


FAILED_RUN_PATTERN = "failed-run-*.json"


def _shards_from_json(entries: Any, field: str) -> tuple[Shard, ...]:
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and set(SHARD_KEYS) <= e.keys() for e in entries
    ):
        raise DataError(
            f"manifest.json: {field} must list shards as objects with {', '.join(SHARD_KEYS)}"
        )
    return tuple(Shard(**{key: entry[key] for key in SHARD_KEYS}) for entry in entries)


def manifest_from_json(
    text: str | bytes, remedy: str = "run the preprocessing pipeline again with this version"
) -> Manifest:
    """Parse and check ``manifest.json``; ``remedy`` ends the refusal of another format version."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"manifest.json is not valid JSON ({exc}); the pipeline run did not finish"
        ) from exc
    if doc.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"manifest.json has format_version {doc.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}: {remedy}"
        )
    fields = {f.name for f in dataclasses.fields(Manifest)}
    missing = fields - OPTIONAL_FIELDS - doc.keys()
    if missing:
        raise DataError(f"manifest.json lacks {sorted(missing)}")
    if doc["encoding"] not in registry.TOKEN_FORMATS:
        raise DataError(
            f"manifest.json names the token encoding {doc['encoding']!r}, which this version does not "
            f"read (it reads {', '.join(registry.TOKEN_FORMATS)}): use the version that wrote it, or "
            "preprocess again"
        )
    doc = {k: v for k, v in doc.items() if k in fields}
    doc["train_shards"] = _shards_from_json(doc["train_shards"], "train_shards")
    doc["validation_shards"] = _shards_from_json(doc["validation_shards"], "validation_shards")
    return Manifest(**doc)


# --------------------------------------------------------------------------- paths


def join(directory: str, name: str) -> str:
    """Join a file name onto a local or URL-style (``gs://``, ``ram://``) directory."""
    return directory.rstrip("/") + "/" + name
