"""A synthetic pipeline output, written through :mod:`preprocessing.records` like the real
pipeline's.

For the benchmark (``bench/train.py``) and for tests that need a data directory with a given shape
(or a deliberately broken one) without running Beam. The token streams are learnable: mostly
``next = previous + 1 (mod vocab)``, with random jumps.
"""

from __future__ import annotations

import random

import tensorflow as tf

from preprocessing import examples, records
from preprocessing import shards as shard_files
from preprocessing.windowing import spans, window_count, windows


def token_stream(rng: random.Random, vocab_size: int, length: int, jump: float = 0.1) -> list[int]:
    ids = [rng.randrange(vocab_size)]
    while len(ids) < length:
        ids.append(rng.randrange(vocab_size) if rng.random() < jump else (ids[-1] + 1) % vocab_size)
    return ids


def write_dataset(
    out: str,
    *,
    vocab_size: int = 20,
    sequence_length: int = 8,
    train_pieces: int = 12,
    validation_pieces: int = 3,
    piece_length: int = 60,
    num_shards: int = 2,
    compression: str = "none",
    seed: int = 0,
    layout: str = records.SPANS,
    stride: int | None = None,
) -> records.Manifest:
    """Write shards, ``vocab.json`` and (last) ``manifest.json`` into ``out``; return the
    manifest.

    ``layout`` ``spans`` (format 3, as the pipeline writes, ``stride`` defaulting to the sequence
    length) or ``windows`` (format 2, one window per record at ``stride``, default 1: a data folder
    written before spans)."""
    rng = random.Random(seed)
    tf.io.gfile.makedirs(out)
    vocab = [f"tok{i}" for i in range(vocab_size)]
    stride = stride or (sequence_length if layout == records.SPANS else 1)
    pieces = {
        records.TRAIN: [token_stream(rng, vocab_size, piece_length) for _ in range(train_pieces)],
        records.VALIDATION: [
            token_stream(rng, vocab_size, piece_length) for _ in range(validation_pieces)
        ],
    }
    if layout == records.SPANS:
        encode = examples.encode_span
        split_records = {
            split: [(span,) for ids in split_pieces for span in spans(ids, sequence_length, stride)]
            for split, split_pieces in pieces.items()
        }
    else:
        encode = examples.encode_example
        split_records = {
            split: [w for ids in split_pieces for w in windows(ids, sequence_length, stride)]
            for split, split_pieces in pieces.items()
        }
    shards: dict[str, tuple[records.Shard, ...]] = {}
    options = tf.io.TFRecordOptions(compression_type=records.tf_compression_type(compression))
    run_id = f"synth{seed:03d}"
    for split, items in split_records.items():
        entries = []
        for index in range(num_shards if items else 0):
            name = records.shard_name(split, run_id, index, num_shards, compression)
            path = records.join(out, name)
            # TensorFlow's own writer, not the pipeline's: the reader's checks are tested on both.
            with tf.io.TFRecordWriter(path, options) as writer:
                for item in items[index::num_shards]:
                    writer.write(encode(*item))
            with tf.io.gfile.GFile(path, "rb") as f:
                entries.append(shard_files.describe(name, f.read(), len(items[index::num_shards])))
        shards[split] = tuple(entries)
    with tf.io.gfile.GFile(records.join(out, records.VOCAB_FILE), "w") as f:
        f.write(records.vocab_to_json(vocab))
    window_stride = 1 if layout == records.SPANS else stride
    counts = {
        f"{split}_windows": sum(window_count(len(ids), sequence_length, window_stride) for ids in p)
        for split, p in pieces.items()
    }
    if layout == records.SPANS:
        counts.update({f"{split}_spans": len(items) for split, items in split_records.items()})
    manifest = records.Manifest(
        sequence_length=sequence_length,
        stride=stride,
        vocab_size=vocab_size,
        vocab_hash=records.vocab_hash(vocab),
        parts="first",
        compression=compression,
        validation_fraction=validation_pieces / max(1, train_pieces + validation_pieces),
        counts={"train_pieces": train_pieces, "validation_pieces": validation_pieces, **counts},
        train_shards=shards[records.TRAIN],
        validation_shards=shards[records.VALIDATION],
        run_id=run_id,
        layout=layout,
        format_version=3 if layout == records.SPANS else 2,
    )
    with tf.io.gfile.GFile(records.join(out, records.MANIFEST_FILE), "w") as f:
        f.write(records.manifest_to_json(manifest))
    return manifest
