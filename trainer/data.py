"""tf.data input for the trainer, read through :mod:`preprocessing.records` (the one owner of the
format).

``load(data_dir)`` checks a pipeline output (finished manifest, vocabulary hash, transposition
table, every shard present with the manifest's size and content, the first records parse in the
manifest's layout and sequence length and hold ids inside the vocabulary) and raises
:class:`records.DataError` with one sentence when something is wrong, before the first training
step.

``dataset(...)`` builds the stream for one split::

    shard names (manifest) -> interleave(TFRecordDataset, parallel) -> [shuffle records] -> repeat
        -> windows of each record (trainer.windows: every one, or the sequence objective's crops)
        -> [shuffle windows] -> batch(GLOBAL batch size) -> vocabulary check
        -> [move each training window by a drawn shift] -> (inputs, following) -> prefetch

* Shuffling happens on serialized records before parsing (cheaper), then on windows (a span's
  windows arrive together), each with ``--shuffle-buffer`` and ``--seed``; the file order is
  shuffled with the same seed.
* The batch size is the *global* one: ``strategy.experimental_distribute_dataset`` splits every
  global batch across the replicas of all workers.
* ``.repeat()`` comes before the windows and ``batch``: the trainer runs a fixed number of steps per
  epoch (every worker the same number, which collectives need), so the stream must never run dry,
  and batches may cross epoch boundaries instead of being short.
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

from preprocessing import reader, records, windowing
from preprocessing.messages import first_line
from preprocessing.records import DataError
from trainer import windows as windows_lib
from trainer.model import OBJECTIVES

AUTOTUNE = tf.data.AUTOTUNE

__all__ = ["DataError", "Data", "load", "dataset", "shard_paths", "auto_shard_policy"]


MIXED_SPANS = 64
"""Spans whose windows a shuffled stream deals out in turn, before its window shuffle: with
``--stride S`` a span holds S windows, and a shuffle buffer alone would mix only the windows of
``--shuffle-buffer / S`` spans."""

VOCABULARY_CHECK = "token id outside the vocabulary"
"""How the input pipeline's check of every id begins its message."""


def is_data_mismatch(message: str) -> bool:
    """Whether a TensorFlow error raised while training is the data's: an id outside the
    vocabulary, or a record that does not parse as the manifest's windows."""
    return VOCABULARY_CHECK in message or "serialized Example" in message or "Key: " in message


@dataclasses.dataclass(frozen=True)
class Data:
    """A checked pipeline output: where it is, its manifest, its vocabulary and (``--transpose``)
    the rows of its transposition table."""

    data_dir: str
    manifest: records.Manifest
    vocab: tuple[str, ...]
    transpositions: list[list[int]] | None = None

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
    table = reader.read_transpositions(data_dir, manifest)
    data = Data(data_dir=data_dir, manifest=manifest, vocab=tuple(vocab), transpositions=table)
    if check_records:
        for split in records.SPLITS:
            if manifest.shards(split):
                _check_first_records(data, split, check_records)
    return data


def _check_first_records(data: Data, split: str, count: int) -> None:
    """Parse the first ``count`` records of the first shard of ``split`` against the manifest: the
    layout, the span lengths its sequence length and stride allow, the vocabulary."""
    path = shard_paths(data.data_dir, data.manifest, split)[0]
    manifest = data.manifest
    ds = tf.data.TFRecordDataset(
        path, compression_type=records.tf_compression_type(manifest.compression)
    )
    spans = manifest.layout == records.SPANS
    parse = windows_lib.parse_span if spans else windows_lib.parse_windows(manifest)
    shortest, longest = manifest.sequence_length + 1, manifest.sequence_length + manifest.stride
    layout = (
        f"spans of {shortest} to {longest} tokens: sequence length {manifest.sequence_length}, "
        f"stride {manifest.stride}"
        if spans
        else f"windows of sequence length {manifest.sequence_length}"
    )
    try:
        for serialized in ds.take(count):
            ids = parse(serialized).numpy()
            if spans and not shortest <= len(ids) <= longest:
                raise DataError(
                    f"the records in {path} do not match {records.MANIFEST_FILE} ({layout}): a "
                    f"record holds {len(ids)} tokens; {records.RERUN}"
                )
            if ids.min() < 0 or ids.max() >= data.vocab_size:
                outside = int(ids.max() if ids.max() >= data.vocab_size else ids.min())
                raise DataError(
                    f"a record in {path} holds token id {outside}, outside the vocabulary of "
                    f"{data.vocab_size} tokens in vocab.json: the records and the vocabulary come "
                    f"from different pipeline runs; {records.RERUN}"
                )
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as exc:
        raise DataError(
            f"the records in {path} do not match {records.MANIFEST_FILE} ({layout}, compression "
            f"{manifest.compression!r}): {first_line(exc)}; {records.RERUN}"
        ) from None


def auto_shard_policy(num_files: int, num_workers: int) -> tf.data.experimental.AutoShardPolicy:
    """FILE when every worker can get at least one shard, else DATA."""
    policy = tf.data.experimental.AutoShardPolicy
    return policy.FILE if num_files >= max(1, num_workers) else policy.DATA


def examples_per_epoch(data: Data, objective: str) -> int:
    """Training examples in one pass: every window for ``last``; for ``sequence`` over spans, the
    crops that train each target about once (a crop trains ``sequence_length`` of them), and at
    least one per span (spans at a stride below the sequence length give one each)."""
    windows = data.windows(records.TRAIN)
    if objective == "sequence" and data.manifest.layout == records.SPANS:
        crops = -(-windows // data.sequence_length)
        return max(1, crops, data.manifest.records(records.TRAIN))
    return windows


def dataset(
    data: Data,
    split: str,
    global_batch_size: int,
    *,
    objective: str = "last",
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    shuffle: bool | None = None,
    repeat: bool = True,
    weighted: bool = False,
    num_workers: int = 1,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """``(inputs [B, L] int64, following [B, L] int64)`` batches of ``split``, ``B`` = the global
    batch size and ``L`` the sequence length: ``following[:, i]`` is the token after
    ``inputs[:, i]``, so ``following[:, -1]`` is the window's target.

    What a record becomes (:mod:`trainer.windows`): every window it holds at stride 1, or, for the
    shuffled training stream of the ``sequence`` objective over spans, crops from a random offset. A
    shuffled training stream of an output with ``--transpose`` is moved, window by window, by a
    drawn shift. ``weighted=True`` (for evaluation) yields ``(inputs, following, weight)``: one pass
    over the windows with weight 1, then the same windows again and again with weight 0, so a fixed
    number of steps (``steps(windows, B)``, the same on every worker) covers every window exactly
    once in the weighted sums. It is sharded by data (every worker reads all shards and keeps its
    share), so the split of weight-1 windows between workers does not depend on how the windows fall
    into shards.
    """
    if global_batch_size < 1:
        raise DataError(f"batch size must be at least 1, not {global_batch_size}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    files = shard_paths(data.data_dir, data.manifest, split)
    if not files:
        raise DataError(f"{data.data_dir} lists no {split} shards in {records.MANIFEST_FILE}")
    shuffle = (split == records.TRAIN) if shuffle is None else shuffle
    compression = records.tf_compression_type(data.manifest.compression)
    seed_value = 0 if seed is None else seed
    training = split == records.TRAIN and shuffle and not weighted
    cropped = training and objective == "sequence" and data.manifest.layout == records.SPANS

    def read(shuffled: bool, repeated: bool) -> tf.data.Dataset:
        stream = serialized_records(files, compression, shuffled, seed, shuffle_buffer)
        stream = stream.repeat() if repeated else stream
        return record_windows(stream, data.manifest, cropped, shuffled, seed, shuffle_buffer)

    if weighted:
        ds = read(shuffle, False).map(weight(1.0)).concatenate(read(False, True).map(weight(0.0)))
    else:
        ds = read(shuffle, repeat)
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    ds = ds.map(vocabulary_check(data.vocab_size), num_parallel_calls=AUTOTUNE)
    if training and data.transpositions is not None:
        table = windows_lib.shift_table(data.transpositions, data.vocab_size)
        shift = windows_lib.shift_batch(table, data.vocab_size, seed_value)
        ds = ds.scan(tf.constant(0, tf.int64), shift)
    ds = ds.map(split_window, num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if weighted
        else auto_shard_policy(len(files), num_workers)
    )
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def record_windows(
    records_stream: tf.data.Dataset,
    manifest: records.Manifest,
    cropped: bool,
    shuffled: bool,
    seed: int | None,
    shuffle_buffer: int,
) -> tf.data.Dataset:
    """Windows of ``L + 1`` tokens from serialized records: every stride-1 window a record holds,
    or with ``cropped`` (the sequence objective's training stream) crops from a random offset;
    when ``shuffled``, dealt out from :data:`MIXED_SPANS` records at a time and shuffled."""
    if cropped:
        seed_value = 0 if seed is None else seed
        per_record = records_stream.scan(
            tf.constant(0, tf.int64), windows_lib.crops(manifest, seed_value)
        )
    else:
        per_record = records_stream.map(
            windows_lib.parse_windows(manifest), num_parallel_calls=AUTOTUNE
        )
    if not shuffled:
        return per_record.unbatch()
    # A span's windows would arrive in a row: deal them out from MIXED_SPANS spans at a time, then
    # shuffle the windows too.
    ds = per_record.interleave(
        tf.data.Dataset.from_tensor_slices, cycle_length=MIXED_SPANS, block_length=1
    )  # sequential: the same order for a seed
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def weight(value: float):
    """A map function pairing each window with a constant weight (1 counted, 0 padding)."""

    def weighted(window):
        return window, tf.constant(value)

    return weighted


def vocabulary_check(vocab_size: int):
    """A batch map that stops the input with :data:`VOCABULARY_CHECK` at an id outside
    ``[0, vocab_size)``: ids of another vocabulary would silently mean other notes."""

    def check(window, *weight):
        inside = tf.logical_and(
            tf.reduce_min(window) >= 0, tf.reduce_max(window) < tf.constant(vocab_size, tf.int64)
        )
        assertion = tf.debugging.Assert(
            inside, [f"{VOCABULARY_CHECK} of {vocab_size} tokens", tf.reduce_max(window)]
        )
        with tf.control_dependencies([assertion]):
            checked = tf.identity(window)
        return (checked, *weight) if weight else checked

    return check


def split_window(window, *weight):
    """``[B, L + 1]`` windows → ``(inputs, following, *weight)``."""
    return (window[:, :-1], window[:, 1:], *weight)


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
    """All (or the first ``limit``) windows of ``split`` as numpy arrays ``(inputs [N, L], targets
    [N])``, in file order, as stored (never moved)."""
    ds = dataset(data, split, 4096, shuffle=False, repeat=False, drop_remainder=False)
    xs, ys, n = [], [], 0
    try:
        for x, following in ds.as_numpy_iterator():
            xs.append(x)
            ys.append(following[:, -1])
            n += len(x)
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


def pieces(data: Data, split: str, limit: int | None = None) -> list[list[int]]:
    """The token ids of ``split``'s pieces, put back together from (the first ``limit``) records in
    file order (:func:`preprocessing.windowing.reassemble`, whatever the layout and stride)."""
    files = shard_paths(data.data_dir, data.manifest, split)
    if not files:
        return []
    compression = records.tf_compression_type(data.manifest.compression)
    ds = serialized_records(files, compression, False, None, 0)
    if data.manifest.layout == records.SPANS:
        ds = ds.map(windows_lib.parse_span)
    else:
        ds = ds.map(windows_lib.parse_windows(data.manifest)).unbatch()
    if limit is not None:
        ds = ds.take(limit)
    try:
        sequences = [row.tolist() for row in ds.as_numpy_iterator()]
    except tf.errors.DataLossError as exc:
        raise DataError(
            f"a {split} shard in {data.data_dir} is damaged: {first_line(exc)}; {records.RERUN}"
        ) from None
    return windowing.reassemble(sequences, data.manifest.record_overlap)


def steps(windows: int, global_batch_size: int, chosen: int | None = None) -> int:
    """Steps that cover ``windows`` once (at least one), or ``chosen`` steps when given (the
    stream repeats, so an epoch may be shorter or longer than one pass)."""
    return chosen or max(1, -(-windows // global_batch_size))
