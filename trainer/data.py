"""tf.data input for the trainer, read through :mod:`preprocessing.records` (the one owner of the
format).

``load(data_dir)`` checks a pipeline output (finished manifest, vocabulary hash, every shard present
with the manifest's size and content, the first records parse with the manifest's sequence length
and hold ids inside the vocabulary) and raises :class:`records.DataError` with one sentence when
something is wrong, before the first training step.

``dataset(...)`` builds the stream for one split::

    shard names (manifest) -> interleave(TFRecordDataset, parallel) -> [shuffle] -> repeat
        -> batch(GLOBAL batch size) -> parse_example (batched, records.parse_spec)
        -> prefetch(AUTOTUNE)

* Shuffling happens on serialized records before parsing (cheaper), with ``--shuffle-buffer`` and
  ``--seed``; the file order is shuffled with the same seed.
* The batch size is the *global* one: ``strategy.experimental_distribute_dataset`` splits every
  global batch across the replicas of all workers.
* ``.repeat()`` comes before ``batch``: the trainer runs a fixed number of steps per epoch (every
  worker the same number, which collectives need), so the stream must never run dry, and batches
  may cross epoch boundaries instead of being short.
* Auto-shard policy ``FILE`` (each worker reads its own shards) when there are at least as many
  shards as workers, otherwise ``DATA`` (each worker reads everything and keeps its share).
* Evaluation uses ``weighted=True``: one pass with weight 1, then weight-0 padding, so a fixed step
  count on every worker counts every validation window exactly once.

Paths go through ``tf.io.gfile`` / TFRecordDataset, so local paths, ``gs://``, ``ram://`` and
Vertex AI's ``/gcs/<bucket>/`` FUSE mount take the same code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from preprocessing import reader, records
from preprocessing.messages import first_line
from preprocessing.records import DataError

AUTOTUNE = tf.data.AUTOTUNE

__all__ = ["DataError", "Data", "load", "dataset", "shard_paths", "auto_shard_policy", "baselines"]


VOCABULARY_CHECK = "token id outside the vocabulary"
"""How the input pipeline's check of every id begins its message."""


def is_data_mismatch(message: str) -> bool:
    """Whether a TensorFlow error raised while training is the data's: an id outside the
    vocabulary, or a record that does not parse as the manifest's windows."""
    return VOCABULARY_CHECK in message or "serialized Example" in message or "Key: " in message


@dataclasses.dataclass(frozen=True)
class Data:
    """A checked pipeline output: where it is, its manifest and its vocabulary."""

    data_dir: str
    manifest: records.Manifest
    vocab: tuple[str, ...]

    @property
    def sequence_length(self) -> int:
        return self.manifest.sequence_length

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    def windows(self, split: str) -> int:
        return self.manifest.windows(split)


def shard_paths(data_dir: str, manifest: records.Manifest, split: str) -> list[str]:
    return [records.join(data_dir, name) for name in manifest.shards(split)]


def load(data_dir: str, check_records: int = 16, *, full: bool = False) -> Data:
    """Read and check ``data_dir``; raise :class:`DataError` with one readable sentence if unusable.

    Every listed shard is checked before anything trains: present, of the manifest's size and of its
    content (the hash of its first and last 64 KiB; ``full``: of every byte), with the shards'
    record counts adding up to the manifest's windows (:func:`preprocessing.reader.verify`).
    """
    # finished? vocab hash? every shard intact?
    manifest, vocab = reader.read_output(data_dir, full=full)
    if manifest.windows(records.TRAIN) <= 0 or not manifest.train_shards:
        raise DataError(
            f"{data_dir} holds no training windows (manifest counts "
            f"{manifest.windows(records.TRAIN)}): the pieces are too short for sequence length "
            f"{manifest.sequence_length} or no MIDI file parsed; see {records.DEAD_LETTER_FILE}"
        )
    data = Data(data_dir=data_dir, manifest=manifest, vocab=tuple(vocab))
    if check_records:
        for split in records.SPLITS:
            if manifest.shards(split):
                _check_first_records(data, split, check_records)
    return data


def _check_first_records(data: Data, split: str, count: int) -> None:
    """Parse the first ``count`` records of the first shard of ``split`` against the manifest."""
    path = shard_paths(data.data_dir, data.manifest, split)[0]
    spec = records.parse_spec(data.sequence_length)
    ds = tf.data.TFRecordDataset(
        path, compression_type=records.tf_compression_type(data.manifest.compression)
    )
    try:
        for serialized in ds.take(count):
            parsed = tf.io.parse_single_example(serialized, spec)
            ids = np.concatenate(
                [parsed[records.INPUTS_FEATURE].numpy(), [parsed[records.TARGET_FEATURE].numpy()]]
            )
            if ids.min() < 0 or ids.max() >= data.vocab_size:
                raise DataError(
                    f"a record in {path} holds token id {int(ids.max() if ids.max() >= data.vocab_size else ids.min())}, "
                    f"outside the vocabulary of {data.vocab_size} tokens in vocab.json: the records and the "
                    f"vocabulary come from different pipeline runs; {records.RERUN}"
                )
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as exc:
        raise DataError(
            f"the records in {path} do not match {records.MANIFEST_FILE} (sequence length "
            f"{data.sequence_length}, compression {data.manifest.compression!r}): "
            f"{first_line(exc)}; {records.RERUN}"
        ) from None


def auto_shard_policy(num_files: int, num_workers: int) -> tf.data.experimental.AutoShardPolicy:
    """FILE when every worker can get at least one shard, else DATA."""
    policy = tf.data.experimental.AutoShardPolicy
    return policy.FILE if num_files >= max(1, num_workers) else policy.DATA


def dataset(
    data: Data,
    split: str,
    global_batch_size: int,
    *,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    shuffle: bool | None = None,
    repeat: bool = True,
    weighted: bool = False,
    num_workers: int = 1,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """``(inputs [B, seq] int64, target [B] int64)`` batches of ``split``, ``B`` = the global batch
    size.

    ``weighted=True`` (for evaluation) yields ``(inputs, target, weight)``: one pass over the
    windows with weight 1, then the same windows again and again with weight 0, so a fixed number of
    steps (``steps(windows, B)``, the same on every worker) covers every window exactly once in the
    weighted sums. It is sharded by data (every worker reads all shards and keeps its share), so the
    split of weight-1 windows between workers does not depend on how the windows fall into shards.
    """
    if global_batch_size < 1:
        raise DataError(f"batch size must be at least 1, not {global_batch_size}")
    files = shard_paths(data.data_dir, data.manifest, split)
    if not files:
        raise DataError(f"{data.data_dir} lists no {split} shards in {records.MANIFEST_FILE}")
    shuffle = (split == records.TRAIN) if shuffle is None else shuffle
    compression = records.tf_compression_type(data.manifest.compression)
    spec = records.parse_spec(data.sequence_length)
    vocab_size = data.vocab_size

    def read(shuffled: bool) -> tf.data.Dataset:
        return serialized_records(files, compression, shuffled, seed, shuffle_buffer)

    if weighted:

        def counted(record):
            return record, tf.constant(1.0)

        def padding(record):
            return record, tf.constant(0.0)

        ds = read(shuffle).map(counted).concatenate(read(False).map(padding).repeat())
    else:
        ds = read(shuffle)
        if repeat:
            ds = ds.repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)

    def parse(serialized, *weight):
        parsed = tf.io.parse_example(serialized, spec)
        inputs, target = parsed[records.INPUTS_FEATURE], parsed[records.TARGET_FEATURE]
        check = tf.debugging.assert_less(
            tf.maximum(tf.reduce_max(inputs), tf.reduce_max(target)),
            tf.constant(vocab_size, tf.int64),
            message=f"{VOCABULARY_CHECK} of {vocab_size} tokens",
        )
        with tf.control_dependencies([check]):
            return (tf.identity(inputs), tf.identity(target), *weight)

    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if weighted
        else auto_shard_policy(len(files), num_workers)
    )
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def serialized_records(
    files: list[str], compression: str, shuffled: bool, seed: int | None, shuffle_buffer: int
) -> tf.data.Dataset:
    """The shards' records, interleaved in a fixed order; with ``shuffled``, the files and then the
    records shuffled (seeded)."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffled and len(files) > 1:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(len(files), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,  # with --seed, the same order every run
    )
    if shuffled and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def numpy_windows(
    data: Data, split: str, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All (or the first ``limit``) windows of ``split`` as numpy arrays, in file order."""
    ds = dataset(data, split, 4096, shuffle=False, repeat=False, drop_remainder=False)
    xs, ys, n = [], [], 0
    try:
        for x, y in ds.as_numpy_iterator():
            xs.append(x)
            ys.append(y)
            n += len(y)
            if limit is not None and n >= limit:
                break
    except tf.errors.DataLossError as exc:  # a shard damaged after load() checked it
        raise DataError(
            f"a {split} shard in {data.data_dir} is damaged: {first_line(exc)}; {records.RERUN}"
        ) from None
    if not xs:
        return np.zeros((0, data.sequence_length), np.int64), np.zeros((0,), np.int64)
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def baselines(
    train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], vocab_size: int
) -> dict[str, float]:
    """Validation next-token accuracy of a unigram and a bigram model counted from the training
    windows.

    unigram: always predict the most frequent training target. bigram: predict the most frequent
    target that followed the window's last token in training (unigram's guess for unseen tokens).
    """
    (train_x, train_y), (val_x, val_y) = train, validation
    if len(val_y) == 0 or len(train_y) == 0:
        return {}
    unigram = np.bincount(train_y, minlength=vocab_size)
    most_frequent = int(unigram.argmax())
    # Sparse bigram counts (a dense vocab x vocab table would not fit large vocabularies).
    pairs, counts = np.unique(
        train_x[:, -1].astype(np.int64) * vocab_size + train_y, return_counts=True
    )
    prev, nxt = pairs // vocab_size, pairs % vocab_size
    order = np.lexsort((-counts, prev))  # by previous token, most frequent follower first
    prev, nxt = prev[order], nxt[order]
    first = np.r_[True, prev[1:] != prev[:-1]]
    guess = np.full(vocab_size, most_frequent, np.int64)
    guess[prev[first]] = nxt[first]
    return {
        "unigram_val_accuracy": float(np.mean(val_y == most_frequent)),
        "bigram_val_accuracy": float(np.mean(guess[val_x[:, -1]] == val_y)),
    }


def steps(windows: int, global_batch_size: int, cap: int | None = None) -> int:
    """Steps that cover ``windows`` once (at least one), optionally capped."""
    n = max(1, -(-windows // global_batch_size))
    return min(n, cap) if cap else n
