"""A synthetic pipeline output, written through :mod:`preprocessing.records` like the real
pipeline's.

For the benchmark (``bench/train.py``) and for tests that need a data directory with a given shape
(or a deliberately broken one) without running Beam. The token streams are learnable: mostly
``next = previous + 1 (mod vocab)``, with random jumps.
"""

from __future__ import annotations

import random

import tensorflow as tf

from preprocessing import records
from preprocessing import shards as shard_files
from preprocessing.windowing import windows


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
) -> records.Manifest:
    """Write shards, ``vocab.json`` and (last) ``manifest.json`` into ``out``; return the
    manifest."""
    rng = random.Random(seed)
    tf.io.gfile.makedirs(out)
    vocab = [f"tok{i}" for i in range(vocab_size)]
    split_windows = {
        records.TRAIN: [
            w
            for _ in range(train_pieces)
            for w in windows(token_stream(rng, vocab_size, piece_length), sequence_length)
        ],
        records.VALIDATION: [
            w
            for _ in range(validation_pieces)
            for w in windows(token_stream(rng, vocab_size, piece_length), sequence_length)
        ],
    }
    shards: dict[str, tuple[records.Shard, ...]] = {}
    options = tf.io.TFRecordOptions(compression_type=records.tf_compression_type(compression))
    run_id = f"synth{seed:03d}"
    for split, items in split_windows.items():
        entries = []
        for index in range(num_shards if items else 0):
            name = records.shard_name(split, run_id, index, num_shards, compression)
            path = records.join(out, name)
            # TensorFlow's own writer, not the pipeline's: the reader's checks are tested on both.
            with tf.io.TFRecordWriter(path, options) as writer:
                for inputs, target in items[index::num_shards]:
                    writer.write(records.encode_example(inputs, target))
            with tf.io.gfile.GFile(path, "rb") as f:
                entries.append(shard_files.describe(name, f.read(), len(items[index::num_shards])))
        shards[split] = tuple(entries)
    with tf.io.gfile.GFile(records.join(out, records.VOCAB_FILE), "w") as f:
        f.write(records.vocab_to_json(vocab))
    manifest = records.Manifest(
        sequence_length=sequence_length,
        stride=1,
        vocab_size=vocab_size,
        vocab_hash=records.vocab_hash(vocab),
        parts="first",
        compression=compression,
        validation_fraction=validation_pieces / max(1, train_pieces + validation_pieces),
        counts={
            "train_pieces": train_pieces,
            "validation_pieces": validation_pieces,
            "train_windows": len(split_windows[records.TRAIN]),
            "validation_windows": len(split_windows[records.VALIDATION]),
        },
        train_shards=shards[records.TRAIN],
        validation_shards=shards[records.VALIDATION],
        run_id=run_id,
    )
    with tf.io.gfile.GFile(records.join(out, records.MANIFEST_FILE), "w") as f:
        f.write(records.manifest_to_json(manifest))
    return manifest
