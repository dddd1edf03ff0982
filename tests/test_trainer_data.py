"""trainer.data: checks of a data directory, the tf.data stream, and the n-gram baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import synthetic
import tensorflow as tf

from preprocessing import records
from trainer import data as data_lib


@pytest.fixture()
def small(tmp_path):
    out = tmp_path / "data"
    manifest = synthetic.write_dataset(
        str(out),
        vocab_size=20,
        sequence_length=8,
        train_pieces=4,
        validation_pieces=2,
        piece_length=30,
    )
    return out, manifest


def test_load_reads_manifest_and_vocab(small):
    out, manifest = small
    data = data_lib.load(str(out))
    assert data.vocab_size == 20 and data.sequence_length == 8
    assert data.windows("train") == 4 * 22 == manifest.windows("train")
    assert data.vocab == tuple(f"tok{i}" for i in range(20))


def test_missing_manifest_is_refused(small):
    out, _ = small
    (out / "manifest.json").unlink()
    with pytest.raises(data_lib.DataError, match="is not a finished preprocessing output"):
        data_lib.load(str(out))


def test_vocab_hash_mismatch_is_refused(small):
    out, _ = small
    (out / "vocab.json").write_text(json.dumps([f"other{i}" for i in range(20)]))
    with pytest.raises(data_lib.DataError, match="does not match the records"):
        data_lib.load(str(out))


def test_records_of_another_sequence_length_are_refused(small):
    out, _ = small
    manifest = records.manifest_from_json((out / "manifest.json").read_text())
    doc = json.loads(records.manifest_to_json(manifest))
    doc["sequence_length"] = 6
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(data_lib.DataError, match=r"do not match manifest.json \(sequence length 6"):
        data_lib.load(str(out))


def test_ids_outside_the_vocabulary_are_refused(tmp_path):
    out = tmp_path / "data"
    synthetic.write_dataset(
        str(out), vocab_size=20, train_pieces=2, validation_pieces=1, piece_length=20
    )
    # A smaller vocabulary (hash consistent with the manifest) than the ids in the records.
    vocab = [f"tok{i}" for i in range(5)]
    (out / "vocab.json").write_text(records.vocab_to_json(vocab))
    doc = json.loads((out / "manifest.json").read_text())
    doc.update(vocab_size=5, vocab_hash=records.vocab_hash(vocab))
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(data_lib.DataError, match="outside the vocabulary of 5 tokens"):
        data_lib.load(str(out))


def test_empty_training_set_is_refused(tmp_path):
    out = tmp_path / "data"
    synthetic.write_dataset(str(out), train_pieces=0, validation_pieces=1, piece_length=20)
    with pytest.raises(data_lib.DataError, match="holds no training windows"):
        data_lib.load(str(out))


def test_batches_are_global_and_never_run_dry(small):
    out, _ = small
    data = data_lib.load(str(out))
    ds = data_lib.dataset(data, "train", 32, seed=1)
    assert ds.element_spec[0].shape.as_list() == [32, 8]
    assert ds.element_spec[1].shape.as_list() == [32]
    # 88 windows: 10 batches of 32 are more than three passes; repeat() keeps them coming.
    batches = list(ds.take(10).as_numpy_iterator())
    assert len(batches) == 10
    assert all(x.dtype == np.int64 and x.shape == (32, 8) for x, _ in batches)
    seen = np.concatenate([y for _, y in batches])
    assert seen.max() < 20 and seen.min() >= 0


def test_windows_are_read_exactly(small):
    out, _ = small
    data = data_lib.load(str(out))
    x, y = data_lib.numpy_windows(data, "validation")
    assert x.shape == (2 * 22, 8) and y.shape == (2 * 22,)
    # Each shard holds the writer's windows in order; the synthetic stream mostly counts up by one.
    expected = set()
    for name in data.manifest.shards("validation"):
        for raw in tf.data.TFRecordDataset(str(out / name)).as_numpy_iterator():
            inputs, target = records.decode_example(raw)
            expected.add((tuple(inputs), target))
    assert {(tuple(a), int(b)) for a, b in zip(x, y)} == expected


def test_weighted_stream_counts_every_window_once(small):
    out, _ = small
    data = data_lib.load(str(out))
    n = data.windows("validation")  # 44
    ds = data_lib.dataset(data, "validation", 16, weighted=True)
    assert (
        ds.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.DATA
    )
    batches = list(ds.take(data_lib.steps(n, 16) + 2).as_numpy_iterator())  # 5 batches: 80 rows
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    w = np.concatenate([b[2] for b in batches])
    assert w.sum() == n and set(np.unique(w)) == {0.0, 1.0}
    real = sorted((tuple(map(int, a)), int(b)) for a, b, c in zip(x, y, w) if c == 1.0)
    xs, ys = data_lib.numpy_windows(data, "validation")
    assert real == sorted((tuple(map(int, a)), int(b)) for a, b in zip(xs, ys)) and len(real) == n


def test_shuffle_is_seeded(small):
    out, _ = small
    data = data_lib.load(str(out))

    def first(seed):
        return next(iter(data_lib.dataset(data, "train", 16, seed=seed, shuffle_buffer=100)))[
            1
        ].numpy()

    assert np.array_equal(first(7), first(7))
    assert not np.array_equal(first(7), first(8))


def test_auto_shard_policy():
    policy = tf.data.experimental.AutoShardPolicy
    assert data_lib.auto_shard_policy(num_files=4, num_workers=2) == policy.FILE
    assert data_lib.auto_shard_policy(num_files=2, num_workers=2) == policy.FILE
    assert data_lib.auto_shard_policy(num_files=1, num_workers=2) == policy.DATA


def test_dataset_carries_the_shard_policy(small):
    out, _ = small
    data = data_lib.load(str(out))
    policy = tf.data.experimental.AutoShardPolicy
    assert (
        data_lib.dataset(data, "train", 8, num_workers=2)
        .options()
        .experimental_distribute.auto_shard_policy
        == policy.FILE
    )
    assert (
        data_lib.dataset(data, "train", 8, num_workers=3)
        .options()
        .experimental_distribute.auto_shard_policy
        == policy.DATA
    )


def test_gzip_shards_are_read(tmp_path):
    out = tmp_path / "gz"
    synthetic.write_dataset(
        str(out), compression="gzip", train_pieces=2, validation_pieces=1, piece_length=20
    )
    data = data_lib.load(str(out))
    x, y = data_lib.numpy_windows(data, "train")
    assert len(y) == data.windows("train") == 24


def test_baselines_count_unigram_and_bigram():
    # Training: after token 1 comes 2 (twice), after 2 comes 0; 0 is the most frequent target
    # overall.
    train_x = np.array([[9, 1], [9, 1], [9, 2], [9, 3], [9, 3], [9, 3]])
    train_y = np.array([2, 2, 0, 0, 0, 0])
    val_x = np.array([[0, 1], [0, 2], [0, 3], [0, 4]])
    val_y = np.array([2, 0, 1, 0])
    result = data_lib.baselines((train_x, train_y), (val_x, val_y), vocab_size=10)
    # predicts 0: right for 2nd and 4th
    assert result["unigram_val_accuracy"] == pytest.approx(2 / 4)
    # bigram: 1->2 right, 2->0 right, 3->0 wrong (1), 4 unseen -> unigram 0 right
    assert result["bigram_val_accuracy"] == pytest.approx(3 / 4)


def test_steps():
    assert data_lib.steps(100, 32) == 4
    assert data_lib.steps(10, 32) == 1
    assert data_lib.steps(100, 32, cap=2) == 2
