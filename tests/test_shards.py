"""The shard files: the pipeline's own TFRecord writer against TensorFlow's, and the reader's
checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import pytest
import tensorflow as tf

from preprocessing import examples, reader, records, shards


def _records(count: int, seed: int = 0, length: int = 16, below: int = 128) -> list[bytes]:
    """Random spans; with ids ``below`` 128 every record has the same size (one varint byte per
    id)."""
    rng = random.Random(seed)
    return [
        examples.encode_span([rng.randrange(below) for _ in range(length)]) for _ in range(count)
    ]


def test_framing_is_byte_for_byte_tensorflows(tmp_path):
    items = _records(50, below=40000) + [b""]
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for item in items:
            writer.write(item)
    assert shards.shard_bytes(items, "none") == path.read_bytes()


def test_a_gzip_shard_reads_back_in_tensorflow_and_has_no_time_stamp(tmp_path):
    items = _records(40)
    data = shards.shard_bytes(items, "gzip")
    assert data == shards.shard_bytes(items, "gzip")  # mtime 0: the same bytes every run
    (tmp_path / "a.tfrecord.gz").write_bytes(data)
    read = [
        r.numpy()
        for r in tf.data.TFRecordDataset(str(tmp_path / "a.tfrecord.gz"), compression_type="GZIP")
    ]
    assert read == items


def test_a_shard_is_the_same_bytes_whatever_order_its_records_arrive_in():
    keyed = [
        (shards.record_key("folder/piece.mid", i), item) for i, item in enumerate(_records(30))
    ]
    data, entry = shards.build("train-r-00000-of-00001.tfrecord", keyed, "none")
    shuffled = list(keyed)
    random.Random(1).shuffle(shuffled)
    assert shards.build("train-r-00000-of-00001.tfrecord", shuffled, "none") == (data, entry)
    assert entry.size == len(data) and entry.records == 30
    # small: edges = whole file
    assert entry.sha256 == entry.edges_sha256 == hashlib.sha256(data).hexdigest()
    # The order is the keys', not the bytes': not sorted by the first token.
    assert [r for _, r in sorted(keyed)] != sorted(r for _, r in keyed)


def test_record_keys_are_stable_and_spread_over_the_shards():
    assert (
        shards.record_key("a.mid", 3)
        == shards.record_key("a.mid", 3)
        != shards.record_key("a.mid", 4)
    )
    counts = [0] * 4
    for i in range(4000):
        counts[shards.shard_of((shards.record_key(f"p{i % 7}.mid", i), b""), 4)[0]] += 1
    assert min(counts) > 900


def test_edge_ranges_cover_small_files_whole_and_large_files_at_both_ends():
    assert shards.edge_ranges(10) == [(0, 10)]
    assert shards.edge_ranges(2 * shards.EDGE_BYTES) == [(0, 2 * shards.EDGE_BYTES)]
    big = 2 * shards.EDGE_BYTES + 1
    assert shards.edge_ranges(big) == [
        (0, shards.EDGE_BYTES),
        (big - shards.EDGE_BYTES, shards.EDGE_BYTES),
    ]


def _output(tmp_path, items_per_shard=(5, 3), seed=0, windows=None):
    """A folder with shards, vocab.json and a manifest that lists them."""
    vocab = [f"t{i}" for i in range(300)]
    entries = []
    for index, count in enumerate(items_per_shard):
        name = records.shard_name("train", "r1", index, len(items_per_shard), "none")
        data = shards.shard_bytes(_records(count, seed=seed + index), "none")
        (tmp_path / name).write_bytes(data)
        entries.append(shards.describe(name, data, count))
    spans = sum(items_per_shard) if windows is None else windows
    manifest = records.Manifest(
        sequence_length=8,
        stride=8,
        vocab_size=len(vocab),
        vocab_hash=records.vocab_hash(vocab),
        parts="all",
        compression="none",
        validation_fraction=0.0,
        counts={"train_windows": 8 * spans, "train_spans": spans},
        train_shards=tuple(entries),
        validation_shards=(),
        run_id="r1",
    )
    (tmp_path / "vocab.json").write_text(records.vocab_to_json(vocab))
    (tmp_path / "manifest.json").write_text(records.manifest_to_json(manifest))
    return manifest


def _refusal(tmp_path, full=False) -> str:
    with pytest.raises(records.DataError) as exc:
        reader.read_output(str(tmp_path), full=full)
    message = str(exc.value)
    assert "\n" not in message and message.endswith(records.RERUN)
    return message


def test_an_intact_output_passes_both_checks(tmp_path):
    _output(tmp_path)
    for full in (False, True):
        assert reader.read_output(str(tmp_path), full=full)[0].records("train") == 8


def test_a_shard_cut_at_a_record_boundary_or_mid_record_is_refused_by_its_size(tmp_path):
    manifest = _output(tmp_path)
    path = tmp_path / manifest.shards("train")[1]
    data = path.read_bytes()
    # the first 2 of its 3 records
    path.write_bytes(shards.shard_bytes(_records(2, seed=1), "none"))
    assert (
        f"shard {path} holds {len(path.read_bytes()):,} bytes, manifest.json lists {len(data):,} (truncated"
        in _refusal(tmp_path)
    )
    path.write_bytes(data[:-5])
    assert "truncated or cut" in _refusal(tmp_path)
    path.write_bytes(data + b"x")
    assert "longer than written" in _refusal(tmp_path)


def test_a_shard_of_the_same_size_from_another_run_is_refused_by_its_content(tmp_path):
    manifest = _output(tmp_path)
    other = shards.shard_bytes(_records(5, seed=99), "none")
    path = tmp_path / manifest.shards("train")[0]
    assert len(other) == len(path.read_bytes())  # ids below 128: every record has the same size
    path.write_bytes(other)
    for full in (False, True):
        assert "has the size manifest.json lists" in _refusal(tmp_path, full)


def test_the_quick_check_reads_the_ends_and_the_full_check_every_byte(tmp_path):
    manifest = _output(tmp_path, items_per_shard=(3000,))  # ~240 KiB: larger than both edges
    path = tmp_path / manifest.shards("train")[0]
    data = bytearray(path.read_bytes())
    assert len(data) > 2 * shards.EDGE_BYTES
    middle = len(data) // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    assert reader.read_output(str(tmp_path))  # the quick check does not read the middle ...
    assert "sha256 differs" in _refusal(tmp_path, full=True)  # ... the full one does
    data[middle] ^= 0xFF
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "sha256 of its first and last 64 KiB differs" in _refusal(tmp_path)


def test_a_missing_shard_and_counts_that_do_not_add_up_are_refused(tmp_path):
    manifest = _output(tmp_path)
    (tmp_path / manifest.shards("train")[1]).unlink()
    assert "listed in manifest.json is missing" in _refusal(tmp_path)
    _output(tmp_path, windows=9)
    assert "lists 8 train records in its shards but counts 9 train spans" in _refusal(tmp_path)


def test_a_format_1_manifest_is_refused_in_one_line_that_says_what_to_do(tmp_path):
    manifest = _output(tmp_path)
    doc = json.loads(records.manifest_to_json(manifest))
    doc.update(format_version=1, train_shards=list(manifest.shards("train")))
    doc.pop("run_id")
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(records.DataError) as exc:
        reader.read_output(str(tmp_path))
    assert str(exc.value) == (
        "manifest.json has format_version 1, this code reads 2 and 3: "
        "run the preprocessing job again into this folder with this version"
    )
    with pytest.raises(
        records.DataError, match="train the model again on a new preprocessing output"
    ):
        reader.read_output(str(tmp_path), shards=False)  # a model/ folder


def test_a_manifest_whose_shards_are_not_entries_is_refused(tmp_path):
    doc = json.loads(records.manifest_to_json(_output(tmp_path)))
    doc["train_shards"][0].pop("sha256")
    with pytest.raises(
        records.DataError, match="train_shards must list shards as objects with name, size"
    ):
        records.manifest_from_json(json.dumps(doc))
    assert dataclasses.asdict(
        records.manifest_from_json(records.manifest_to_json(_output(tmp_path)))
    )
