"""The on-disk contract between the preprocessing pipeline and the trainer: the format alone.

One module owns the format so that the writer (the Beam pipeline) and the reader (the trainer's
tf.data input) cannot drift apart: the layouts, the shard file names, and the JSON documents
``vocab.json`` and ``manifest.json``; the bytes of one record are :mod:`preprocessing.examples`',
the transposition table :mod:`preprocessing.transpositions`'.

It never imports Apache Beam (the trainer image does not install it) nor TensorFlow. Serialisation
is kept apart from I/O: the ``*_to_json`` / ``*_from_json`` functions are pure, so the pipeline
writes them through Beam's ``FileSystems`` and the trainer reads them through ``tf.io.gfile``
(:mod:`preprocessing.reader`, which checks a finished output), and both see the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from preprocessing.encodings import registry

FORMAT_VERSION = 3
"""Bumped whenever the meaning of a record or of a manifest field changes.

3: the ``spans`` layout (:data:`SPANS`): a record is a stretch of a piece, not one window, and
``--transpose`` is applied when the trainer reads (``transpositions.json``), not stored; the
manifest says ``layout``, counts ``train_spans`` / ``validation_spans`` (records) beside
``train_windows`` / ``validation_windows`` (the windows of ``sequence_length + 1`` tokens at
stride 1 that the spans hold), and ``transposition_hash`` when there is a table.

2: shard names carry the run's id, and the manifest lists every shard with its byte size, record
count and content hashes (:class:`Shard`), which the trainer checks before its first step. Still 2
with ``encoding_config_hash``, ``encoding_versions``, ``transpose`` (with its counts,
:data:`AUGMENTATION_COUNT_KEYS`) and ``validation_pieces_hash``: optional fields
(:data:`OPTIONAL_FIELDS`), so a manifest written before them reads as before, and a reader before
them ignores them. Still read (:data:`READABLE_VERSIONS`): its layout is :data:`WINDOWS`."""

READABLE_VERSIONS = (2, 3)
"""The format versions this code reads; it writes :data:`FORMAT_VERSION`."""

SPANS = "spans"
WINDOWS = "windows"
LAYOUTS = (SPANS, WINDOWS)
"""How a record holds tokens (:mod:`preprocessing.examples`): ``spans``, stretches of up to
``sequence_length + stride`` tokens starting ``stride`` apart (format 3, what the pipeline writes),
or ``windows``, one window of ``sequence_length`` inputs and its target per record (format 2)."""

ENCODING = registry.REFERENCE.token_format
"""A manifest's default token format: one written before the encoding was recorded is the
reference's."""

VOCAB_FILE = "vocab.json"
TRANSPOSITIONS_FILE = "transpositions.json"
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
SPAN_COUNT_KEYS = ("train_spans", "validation_spans")
"""The records of each split in the ``spans`` layout (in ``windows``, the records are the
windows)."""
TRANSPOSITION_COUNT_KEYS = ("windows_not_always_movable", "shifts_refused")
"""Counts listed only with ``--transpose K`` (K > 0) in the ``spans`` layout: training windows
holding a token that some shift in -K..K cannot move (a note would leave the encoding's pitch
range), and the (window, shift) pairs that cannot be moved: a window trains unshifted when one of
those is drawn (:mod:`preprocessing.transpositions`)."""
AUGMENTATION_COUNT_KEYS = ("transposed_pieces", "transpositions_dropped", "windows_augmented")
"""Counts of a format-2 manifest with ``--transpose K``: stored copies kept (of training pieces),
copies dropped, their windows (``train_windows`` includes them). Read, no longer written."""


NOTED_COUNT_KEYS = ("headers_undercounted", "base_tokens")
"""Counts listed only when not 0: files whose header declared fewer tracks than they hold (read
with every track, :func:`preprocessing.encodings.midi_container.with_every_track`), and with
``--bpe-vocab`` the base tokens the pieces had before they were written with learned ones."""


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
    # how a record holds tokens (LAYOUTS); a format-2 manifest's records are windows
    layout: str = SPANS
    # transpositions.json's hash (transpositions.table_hash); "" without a table
    transposition_hash: str = ""
    # --bpe-vocab N: sizes asked and learned, the sample learned from, the learned part's hash
    bpe_vocab: Mapping[str, Any] = dataclasses.field(default_factory=dict)

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
        """Windows of ``sequence_length + 1`` tokens in ``split``: at stride 1 in the ``spans``
        layout (every one the pieces hold), at the manifest's ``stride`` in ``windows``."""
        return int(self.counts.get(f"{split}_windows", 0))

    def records(self, split: str) -> int:
        """Records in ``split``'s shards: its spans, or (``windows`` layout) its windows."""
        if self.layout == SPANS:
            return int(self.counts.get(f"{split}_spans", 0))
        return self.windows(split)

    @property
    def record_overlap(self) -> int:
        """Tokens that consecutive records of one piece share, what
        :func:`preprocessing.windowing.reassemble` chains them on: ``sequence_length`` for spans,
        ``sequence_length + 1 - stride`` for windows."""
        if self.layout == SPANS:
            return self.sequence_length
        return self.sequence_length + 1 - self.stride

    @property
    def every_window(self) -> bool:
        """Whether the records give every stride-1 window of their pieces (what ``--objective
        last`` trains on): spans always do, stored windows only at stride 1."""
        return self.layout == SPANS or self.stride == 1

    @property
    def shifted_when_read(self) -> bool:
        """Whether the trainer transposes training windows as it reads them (``--transpose`` of a
        ``spans`` output, with its ``transpositions.json``)."""
        return self.layout == SPANS and self.transpose > 0


OPTIONAL_FIELDS = frozenset(
    {
        "encoding_config_hash",
        "encoding_versions",
        "transpose",
        "validation_pieces_hash",
        "layout",
        "transposition_hash",
        "bpe_vocab",
    }
)
"""Manifest fields a manifest may lack: added within format version 2 (a format-2 manifest without
them still reads, with the defaults), or written only when they say something (``transpose``,
``transposition_hash``)."""


def count_keys(manifest: Manifest) -> tuple[str, ...]:
    """The counts a manifest lists, in the order the summary prints them."""
    keys = COUNT_KEYS
    if manifest.layout == SPANS:
        keys += SPAN_COUNT_KEYS
        if manifest.transpose:
            keys += TRANSPOSITION_COUNT_KEYS
    elif manifest.transpose:
        keys += AUGMENTATION_COUNT_KEYS
    return keys + tuple(k for k in NOTED_COUNT_KEYS if manifest.counts.get(k))


def manifest_to_json(manifest: Manifest) -> str:
    """The manifest's JSON: every field, but ``transpose``, ``validation_pieces_hash``,
    ``transposition_hash`` and ``bpe_vocab`` only when set, and a format-2 manifest without
    ``layout`` (as it was written)."""
    doc = dataclasses.asdict(manifest)  # shards become dicts of SHARD_KEYS
    doc["counts"] = {k: int(manifest.counts.get(k, 0)) for k in count_keys(manifest)}
    for optional in ("transpose", "validation_pieces_hash", "transposition_hash", "bpe_vocab"):
        if not doc[optional]:
            del doc[optional]
    if manifest.format_version < 3:
        del doc["layout"]
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
    version = doc.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise DataError(
            f"manifest.json has format_version {version!r}, this code reads {readable}: {remedy}"
        )
    fields = {f.name for f in dataclasses.fields(Manifest)}
    missing = fields - OPTIONAL_FIELDS - doc.keys()
    if version >= 3 and "layout" not in doc:
        missing.add("layout")
    if missing:
        raise DataError(f"manifest.json lacks {sorted(missing)}")
    if version < 3:
        doc["layout"] = WINDOWS  # what format 2 stored, whatever the document says
    if doc["layout"] not in LAYOUTS:
        raise DataError(
            f"manifest.json names the record layout {doc['layout']!r}, which this version does not "
            f"read (it reads {', '.join(LAYOUTS)}): use the version that wrote it, or preprocess "
            "again"
        )
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
