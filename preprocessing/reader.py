"""Reading a finished preprocessing output (or a model folder), checked before anything trusts it.

The trainer, generation and ``evaluate`` read a folder only through :func:`read_output`: its
manifest (a finished output has one; the format version, the layout and the token encoding are
checked), its vocabulary (against the manifest's hash), the encoding's saved files (REMI:
``tokenizer.json``, against the manifest's configuration hash and its record of a learned
vocabulary, :func:`learned_problem`) and, for a data folder, its
transposition table (:func:`read_transpositions`) and every shard it lists (:func:`verify`:
present, of the listed size and content). Every refusal is a
:class:`~preprocessing.records.DataError` of one sentence that says what to do.

Reads go through ``tf.io.gfile`` (local, ``gs://``, ``ram://``), imported when a folder is read:
the writing side, :mod:`preprocessing.records` and :mod:`preprocessing.shards`, never imports
TensorFlow. Why the default shard check hashes only the edges of each shard: docs/ARCHITECTURE.md
("Every shard is checked before the first step").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from preprocessing import records, transpositions
from preprocessing.encodings import loader, registry
from preprocessing.encodings.base import Encoding
from preprocessing.encodings.registry import EncodingError
from preprocessing.messages import first_line
from preprocessing.records import MANIFEST_FILE, RERUN, VOCAB_FILE, DataError, Manifest, Shard, join
from preprocessing.shards import EDGE_BYTES, edge_ranges

READ_CHUNK = 4 * 2**20
MAX_READERS = 16


def _tf():
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------- the folder


def _read_text(path: str) -> str:
    tf = _tf()
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def read_vocab(data_dir: str) -> list[str]:
    return records.vocab_from_json(_read_text(join(data_dir, VOCAB_FILE)))


def read_output(
    directory: str, *, shards: bool = True, full: bool = False
) -> tuple[Manifest, list[str]]:
    """Read and check a finished pipeline output through ``tf.io.gfile`` (local, gs://, ram://):
    its manifest and its vocabulary, each read once.

    Raises :class:`DataError` with one readable sentence when the directory is not a finished
    output, when ``vocab.json`` does not match the manifest's vocabulary hash, or (``shards=True``)
    when a listed shard is missing, of another size or of other content than the manifest lists
    (:func:`verify`; ``full``: hash every byte). A trained model's folder carries the same two files
    without shards.
    """
    tf = _tf()
    path = join(directory, MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        raise DataError(
            f"{path} not found: {directory} is not a finished preprocessing output "
            "(run `lstm-composer preprocess --output DIR` and wait for it to finish)"
        )
    remedy = (
        f"{RERUN} with this version"
        if shards
        else "train the model again on a new preprocessing output, or generate with the version that trained it"
    )
    manifest = records.manifest_from_json(_read_text(path), remedy)
    vocab_path = join(directory, VOCAB_FILE)
    if not tf.io.gfile.exists(vocab_path):
        raise DataError(f"{vocab_path} not found beside the manifest")
    vocab = read_vocab(directory)
    # A data folder is made again by the pipeline; a model folder's copies come from its data one.
    copy_back = "copy it from the data folder the model was trained on, or train the model again"
    if records.vocab_hash(vocab) != manifest.vocab_hash or len(vocab) != manifest.vocab_size:
        what = "the records" if shards else "the model's manifest"
        raise DataError(
            f"{vocab_path} does not match {what}: the manifest was written with a vocabulary of "
            f"{manifest.vocab_size} tokens (hash {manifest.vocab_hash}), vocab.json has {len(vocab)} "
            f"tokens (hash {records.vocab_hash(vocab)}); {RERUN if shards else copy_back}"
        )
    check_saved_encoding(directory, manifest, RERUN if shards else copy_back)
    if shards:
        read_transpositions(directory, manifest)
        verify(directory, manifest, full=full)
    return manifest, vocab


def read_transpositions(directory: str, manifest: Manifest) -> list[list[int]] | None:
    """The rows of a data folder's ``transpositions.json`` (one per shift of
    :func:`~preprocessing.transpositions.semitone_shifts`, each the id every vocabulary id becomes,
    or -1); None when its training windows are not moved when read (no ``--transpose``, or a
    format-2 output that stored its copies).

    The file must be the one the manifest recorded (its hash), and map this vocabulary under the
    manifest's shifts; otherwise a :class:`DataError` of one line."""
    if not manifest.shifted_when_read:
        return None
    tf = _tf()
    path = join(directory, records.TRANSPOSITIONS_FILE)
    if not tf.io.gfile.exists(path):
        raise DataError(
            f"{path} not found: the manifest says --transpose {manifest.transpose}, and the "
            f"trainer moves the training windows through that table; {RERUN}"
        )
    text = _read_text(path)
    problem = None
    if transpositions.table_hash(text) != manifest.transposition_hash:
        problem = (
            f"is not the table this run wrote (hash {transpositions.table_hash(text)}, the "
            f"manifest records {manifest.transposition_hash or 'none'})"
        )
    else:
        try:
            doc = transpositions.table_from_json(text)
        except ValueError as exc:
            problem = f"is not valid JSON ({exc})"
        else:
            problem = transpositions.table_problem(
                doc, manifest.transpose, manifest.vocab_hash, manifest.vocab_size
            )
    if problem:
        raise DataError(f"{path} {problem}: it does not match vocab.json and the manifest; {RERUN}")
    return doc["ids"]


def check_saved_encoding(directory: str, manifest: Manifest, remedy: str = RERUN) -> None:
    """Refuse, in one line, a folder whose encoding's saved files (REMI: ``tokenizer.json``) are
    missing, unreadable, or of another configuration than the manifest's hash. The reference saves
    none: then nothing is read or imported."""
    if registry.by_token_format(manifest.encoding).saved_files:
        encoding_of(directory, manifest, remedy)


def encoding_of(directory: str, manifest: Manifest, remedy: str | None = RERUN) -> Encoding:
    """The encoding of a data or model folder's tokens: its manifest's, rebuilt from the files it
    saved beside ``vocab.json`` (REMI: ``tokenizer.json``) and checked against the manifest's hash;
    an encoding that saves nothing (the reference) is built as it is, without reading a file.

    The one place generation, ``evaluate`` and the trainer's samples get an encoding. A missing,
    unreadable or mismatched saved file is a :class:`DataError` of one line, ended by ``remedy``
    when one is given."""
    registration = registry.by_token_format(manifest.encoding)
    if not registration.saved_files:
        return loader.get(registration.name)
    tf = _tf()
    then = f"; {remedy}" if remedy else ""
    for file_name in registration.saved_files:
        if not tf.io.gfile.exists(join(directory, file_name)):
            raise DataError(
                f"{join(directory, file_name)} not found beside the manifest: the "
                f"{registration.name} encoding's saved tokenizer is needed to read its tokens{then}"
            )

    def read(file_name: str) -> bytes:
        with tf.io.gfile.GFile(join(directory, file_name), "rb") as f:
            return f.read()

    try:
        encoding = loader.load(registration.name, read)
        problem = learned_problem(encoding, manifest, join(directory, registration.saved_files[0]))
        if problem:
            raise DataError(f"{problem}{then}")
        loader.check_config_hash(registration.name, encoding, manifest.encoding_config_hash or None)
    except EncodingError as exc:
        raise DataError(f"{directory}: {' '.join(str(exc).split())}{then}") from exc
    return encoding


def learned_problem(encoding: Encoding, manifest: Manifest, path: str) -> str | None:
    """How the learned vocabulary (``--bpe-vocab``) of the tokenizer saved at ``path`` differs
    from the manifest's record of it, in one sentence; None if it does not."""
    recorded = manifest.bpe_vocab.get("learned_hash", "") if manifest.bpe_vocab else ""
    if recorded and not encoding.learned_hash:
        return (
            f"{path} has no learned vocabulary, but the data was written with --bpe-vocab "
            f"{manifest.bpe_vocab.get('asked')}"
        )
    if encoding.learned_hash and not recorded:
        return f"{path} holds a learned vocabulary, but the data was written without --bpe-vocab"
    if encoding.learned_hash != recorded:
        return (
            f"{path}'s learned vocabulary does not match the manifest (hash "
            f"{encoding.learned_hash}, the manifest records {recorded})"
        )
    return None


def read_manifest(data_dir: str) -> Manifest:
    """The checked manifest of a finished pipeline output (see :func:`read_output`)."""
    return read_output(data_dir)[0]


# --------------------------------------------------------------------------- the shards


def count_problem(manifest: Manifest) -> str | None:
    """Whether the shards' record counts add up to the records (spans, or windows) the manifest
    counts, split by split."""
    unit = "spans" if manifest.layout == records.SPANS else "windows"
    for split in records.SPLITS:
        listed = sum(shard.records for shard in manifest.shard_entries(split))
        if listed != manifest.records(split):
            return (
                f"{records.MANIFEST_FILE} lists {listed:,} {split} records in its shards but counts "
                f"{manifest.records(split):,} {split} {unit}: it was edited or damaged; {RERUN}"
            )
    return None


def shard_problem(shard: Shard, path: str, size: int, digest: str | None, full: bool) -> str | None:
    """What differs between a shard on disk (its ``size`` and hash) and its manifest entry, if
    anything."""
    if size != shard.size:
        how = "truncated or cut" if size < shard.size else "longer than written"
        return (
            f"shard {path} holds {size:,} bytes, {records.MANIFEST_FILE} lists {shard.size:,} ({how} since "
            f"the pipeline wrote it); {RERUN}"
        )
    expected = shard.sha256 if full else shard.edges_sha256
    if digest is not None and digest != expected:
        what = "sha256" if full else f"sha256 of its first and last {EDGE_BYTES // 1024} KiB"
        return (
            f"shard {path} has the size {records.MANIFEST_FILE} lists ({size:,} bytes) but other content "
            f"({what} differs: replaced, e.g. by another run's shard); {RERUN}"
        )
    return None


def _digest(tf, path: str, size: int, full: bool) -> str:
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        if full:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
            return h.hexdigest()
        for offset, length in edge_ranges(size):
            f.seek(offset)
            h.update(f.read(length))
    return h.hexdigest()


def check_shard(directory: str, shard: Shard, full: bool = False) -> str | None:
    """One shard against its entry, through ``tf.io.gfile`` (local, gs://, ram://); a problem or
    None."""
    tf = _tf()
    path = records.join(directory, shard.name)
    try:
        size = tf.io.gfile.stat(path).length
        digest = _digest(tf, path, size, full) if size == shard.size else None
    except tf.errors.NotFoundError:
        return f"shard {path} listed in {records.MANIFEST_FILE} is missing; {RERUN}"
    except tf.errors.OpError as exc:
        return f"cannot read shard {path}: {first_line(exc)}"
    return shard_problem(shard, path, size, digest, full)


def verify(directory: str, manifest: Manifest, *, full: bool = False) -> None:
    """Check every shard the manifest lists (in parallel); :class:`DataError` naming the first
    bad one."""
    problem = count_problem(manifest)
    if problem:
        raise DataError(problem)
    listed: Sequence[Shard] = [
        shard for split in records.SPLITS for shard in manifest.shard_entries(split)
    ]
    if not listed:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_READERS, len(listed))) as pool:
        problems = list(pool.map(lambda shard: check_shard(directory, shard, full), listed))
    problem = next((p for p in problems if p), None)
    if problem:
        raise DataError(problem)
