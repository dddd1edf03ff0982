"""trainer.data: checks of a data directory, the tf.data stream of either layout and objective, and
the n-gram baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import synthetic
import tensorflow as tf

from preprocessing import examples, records, windowing
from trainer import data as data_lib
from trainer.baselines import baselines


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
    with pytest.raises(
        data_lib.DataError,
        match=r"do not match manifest.json \(spans of 7 to 14 tokens: sequence length 6, stride 8\)"
        r": a record holds 1[56] tokens",
    ):
        data_lib.load(str(out))


def test_stored_windows_of_another_sequence_length_are_refused(tmp_path):
    out = tmp_path / "data"
    synthetic.write_dataset(str(out), layout=records.WINDOWS, piece_length=20)
    doc = json.loads((out / "manifest.json").read_text())
    doc["sequence_length"] = 6
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(
        data_lib.DataError, match=r"do not match manifest.json \(windows of sequence length 6"
    ):
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
    assert ds.element_spec[1].shape.as_list() == [32, 8]
    # 88 windows: 10 batches of 32 are more than three passes; repeat() keeps them coming.
    batches = list(ds.take(10).as_numpy_iterator())
    assert len(batches) == 10
    assert all(x.dtype == np.int64 and x.shape == (32, 8) for x, _ in batches)
    seen = np.concatenate([y for _, y in batches])
    assert seen.max() < 20 and seen.min() >= 0
    # following[:, i] is the token after inputs[:, i]
    assert all((x[:, 1:] == y[:, :-1]).all() for x, y in batches)


def test_windows_are_read_exactly(small):
    out, _ = small
    data = data_lib.load(str(out))
    x, y = data_lib.numpy_windows(data, "validation")
    assert x.shape == (2 * 22, 8) and y.shape == (2 * 22,)
    # Each shard holds the writer's windows in order; the synthetic stream mostly counts up by one.
    expected = set()
    for name in data.manifest.shards("validation"):
        for raw in tf.data.TFRecordDataset(str(out / name)).as_numpy_iterator():
            for inputs, target in windowing.windows(examples.decode_span(raw), 8):
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
    y = np.concatenate([b[1][:, -1] for b in batches])
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
    result = baselines((train_x, train_y), (val_x, val_y), vocab_size=10, every_position=True)
    # predicts 0: right for 2nd and 4th
    assert result["unigram_val_accuracy"] == pytest.approx(2 / 4)
    # bigram: 1->2 right, 2->0 right, 3->0 wrong (1), 4 unseen -> unigram 0 right
    assert result["bigram_val_accuracy"] == pytest.approx(3 / 4)
    # every position: also 0->1, 0->2, 0->3, 0->4, which the bigram guesses as the unigram (0 was
    # never a previous token in training): all wrong; the unigram's 0 is wrong there too
    assert result["bigram_val_accuracy_every_position"] == pytest.approx(3 / 8)
    assert result["unigram_val_accuracy_every_position"] == pytest.approx(2 / 8)
    assert baselines((train_x, train_y), (val_x[:0], val_y[:0]), vocab_size=10) == {}


def test_steps():
    assert data_lib.steps(100, 32) == 4
    assert data_lib.steps(10, 32) == 1
    assert data_lib.steps(100, 32, 2) == 2
    assert data_lib.steps(100, 32, 9) == 9  # an epoch may be longer than a pass


@pytest.mark.parametrize("stride", [1, 3, 8, 20])
def test_spans_at_any_stride_give_the_same_windows_as_stored_windows(tmp_path, stride):
    stored = tmp_path / "windows"
    synthetic.write_dataset(str(stored), layout=records.WINDOWS, seed=5)
    spans = tmp_path / f"spans{stride}"
    synthetic.write_dataset(str(spans), stride=stride, seed=5)
    for split in records.SPLITS:
        old = data_lib.numpy_windows(data_lib.load(str(stored)), split)
        new = data_lib.numpy_windows(data_lib.load(str(spans)), split)
        assert sorted(map(tuple, np.c_[old].tolist())) == sorted(map(tuple, np.c_[new].tolist()))
    # spans store each token about (L + S) / S times, stored windows L + 1 times
    size = {
        path.name: sum(f.stat().st_size for f in path.glob("*.tfrecord"))
        for path in (stored, spans)
    }
    assert size[spans.name] < size[stored.name] / {1: 1, 3: 2, 8: 3, 20: 3}[stride]


def test_the_sequence_objective_reads_crops_that_cover_each_target_about_once(tmp_path):
    out = tmp_path / "data"
    synthetic.write_dataset(
        str(out), sequence_length=8, train_pieces=3, validation_pieces=1, piece_length=100
    )
    data = data_lib.load(str(out))
    pieces = data_lib.pieces(data, records.TRAIN)
    per_epoch = data_lib.examples_per_epoch(data, "sequence")
    # one crop of 9 tokens per span of 16 (stride 8): about one per 8 windows
    assert per_epoch == data.manifest.records("train") == 3 * 12
    assert abs(per_epoch - data.windows("train") / 8) <= 3
    assert data_lib.examples_per_epoch(data, "last") == data.windows("train")
    ds = data_lib.dataset(data, "train", 4, objective="sequence", seed=2, shuffle_buffer=1)
    crops = [
        tuple(np.r_[x, y[-1:]])
        for xs, ys in ds.take(3 * per_epoch // 4)
        for x, y in zip(xs.numpy(), ys.numpy())
    ]

    # every crop is L + 1 consecutive tokens of a piece
    def in_a_piece(crop) -> bool:
        return any(
            list(crop) == piece[i : i + 9] for piece in pieces for i in range(len(piece) - 8)
        )

    assert all(in_a_piece(crop) for crop in crops)
    # three epochs: the random offsets differ from epoch to epoch, so the crops do too
    first, later = set(crops[:per_epoch]), set(crops[per_epoch:])
    assert later - first
    # one epoch predicts each target about once: the crops' targets cover most tokens
    targets = {(tuple(crop[:-1]), crop[-1]) for crop in crops[:per_epoch]}
    assert len(targets) >= 0.8 * per_epoch


def test_a_shuffled_stream_deals_out_the_windows_of_many_spans(tmp_path):
    """With no shuffle buffer at all, a batch still holds windows of different spans: a span's
    windows (each the one before moved on by a token) never follow each other."""
    out = tmp_path / "data"
    synthetic.write_dataset(str(out), stride=40, train_pieces=12, piece_length=100)
    data = data_lib.load(str(out))
    assert data.manifest.records("train") >= data_lib.MIXED_SPANS / 2

    def neighbours(shuffle: bool) -> int:
        ds = data_lib.dataset(data, "train", 32, seed=1, shuffle=shuffle, shuffle_buffer=1)
        inputs, _ = next(ds.as_numpy_iterator())
        return sum((a[1:] == b[:-1]).all() for a, b in zip(inputs, inputs[1:]))

    assert neighbours(shuffle=False) >= 25  # in file order: one span's windows after another
    assert neighbours(shuffle=True) == 0
