"""The record format and the pure windowing functions."""

from __future__ import annotations

import fnmatch
import hashlib
import json

import pytest
import tensorflow as tf

from preprocessing import reader, records, shards, windowing


def test_example_bytes_are_a_tf_train_example():
    data = records.encode_example([1, 2, 3, 40000], 7)
    parsed = tf.io.parse_single_example(data, records.parse_spec(4))
    assert parsed["inputs"].numpy().tolist() == [1, 2, 3, 40000]
    assert int(parsed["target"]) == 7
    example = tf.train.Example.FromString(data)
    assert list(example.features.feature["inputs"].int64_list.value) == [1, 2, 3, 40000]
    assert records.decode_example(data) == ([1, 2, 3, 40000], 7)


def test_wrong_sequence_length_fails_to_parse():
    data = records.encode_example([1, 2, 3], 7)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_single_example(data, records.parse_spec(4))


def test_shard_names_carry_the_run():
    assert (
        records.shard_name("train", "1f2e3d4c", 0, 4, "none")
        == "train-1f2e3d4c-00000-of-00004.tfrecord"
    )
    assert (
        records.shard_name("validation", "ab", 2, 3, "gzip")
        == "validation-ab-00002-of-00003.tfrecord.gz"
    )
    assert fnmatch.fnmatch(
        records.shard_name("train", "ab", 2, 3, "gzip"), records.shard_pattern("train")
    )
    # format 1's names
    assert fnmatch.fnmatch("train-00000-of-00004.tfrecord", records.shard_pattern("train"))
    with pytest.raises(ValueError):
        records.shard_suffix("zstd")


def test_vocab_hash_depends_on_order_and_content():
    assert records.vocab_hash(["A4", "B4"]) != records.vocab_hash(["B4", "A4"])
    assert records.vocab_hash(["A4", "B4"]) == records.vocab_hash(["A4", "B4"])
    assert records.vocab_from_json(records.vocab_to_json(["E-4", "0.4.7"])) == ["E-4", "0.4.7"]
    with pytest.raises(records.DataError):
        records.vocab_from_json('["A4", "A4"]')


SHARD_NAME = "train-r1-00000-of-00001.tfrecord"
SHARD_BYTES = shards.shard_bytes(
    [records.encode_example([0, 1, 0, 1, 0, 1, 0, 1], i % 2) for i in range(5)], "none"
)


def _manifest(**overrides) -> records.Manifest:
    fields = {
        "sequence_length": 8,
        "stride": 1,
        "vocab_size": 2,
        "vocab_hash": records.vocab_hash(["A4", "B4"]),
        "parts": "all",
        "compression": "none",
        "validation_fraction": 0.1,
        "counts": {"train_windows": 5},
        "train_shards": (shards.describe(SHARD_NAME, SHARD_BYTES, 5),),
        "validation_shards": (),
        "run_id": "r1",
    }
    fields.update(overrides)
    return records.Manifest(**fields)


def test_manifest_round_trip():
    manifest = _manifest()
    again = records.manifest_from_json(records.manifest_to_json(manifest))
    assert again.train_shards == manifest.train_shards and again.shards("train") == (SHARD_NAME,)
    assert json.loads(records.manifest_to_json(manifest))["train_shards"][0] == {
        "name": SHARD_NAME,
        "size": len(SHARD_BYTES),
        "records": 5,
        "sha256": hashlib.sha256(SHARD_BYTES).hexdigest(),
        "edges_sha256": hashlib.sha256(SHARD_BYTES).hexdigest(),
    }
    assert again.windows("train") == 5 and again.windows("validation") == 0
    assert set(json.loads(records.manifest_to_json(manifest))["counts"]) == set(records.COUNT_KEYS)


def test_read_manifest_refuses_unfinished_and_mismatched_directories(tmp_path):
    with pytest.raises(records.DataError, match="not a finished preprocessing output"):
        reader.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text(records.manifest_to_json(_manifest()))
    (tmp_path / "vocab.json").write_text(records.vocab_to_json(["A4", "C5"]))
    with pytest.raises(records.DataError, match="does not match the records"):
        reader.read_manifest(str(tmp_path))
    (tmp_path / "vocab.json").write_text(records.vocab_to_json(["A4", "B4"]))
    with pytest.raises(
        records.DataError, match=f"shard .*{SHARD_NAME} listed in manifest.json is missing"
    ):
        reader.read_manifest(str(tmp_path))
    (tmp_path / SHARD_NAME).write_bytes(SHARD_BYTES)
    assert reader.read_manifest(str(tmp_path)).vocab_size == 2
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "sequence_len')
    with pytest.raises(records.DataError, match="not valid JSON"):
        reader.read_manifest(str(tmp_path))


@pytest.mark.parametrize(
    "length, seq, stride", [(0, 4, 1), (4, 4, 1), (5, 4, 1), (30, 8, 1), (30, 8, 3), (31, 8, 3)]
)
def test_window_count_matches_windows(length, seq, stride):
    ids = list(range(length))
    made = list(windowing.windows(ids, seq, stride))
    assert windowing.window_count(length, seq, stride) == len(made)
    for inputs, target in made:
        assert len(inputs) == seq
        assert target == inputs[-1] + 1  # the token right after the window, from the same piece


def test_windows_are_the_reference_loop_at_stride_1():
    tokens = [5, 3, 9, 1, 4, 4, 7]
    expected = [(tokens[i : i + 3], tokens[i + 3]) for i in range(0, len(tokens) - 3, 1)]
    assert list(windowing.windows(tokens, 3)) == expected


def test_vocabulary_is_sorted_distinct_tokens():
    assert windowing.vocabulary(["E4", "0.4.7", "E4", "C#5"]) == ["0.4.7", "C#5", "E4"]
    assert windowing.token_ids(["E4", "C#5"], ["0.4.7", "C#5", "E4"]) == [2, 1]


def test_split_is_stable_and_close_to_the_fraction():
    keys = [f"folder/piece_{i}.mid" for i in range(4000)]
    splits = [windowing.split_for(key, 0.1) for key in keys]
    assert splits == [windowing.split_for(key, 0.1) for key in keys]
    share = splits.count("validation") / len(keys)
    assert 0.08 < share < 0.12
    assert all(windowing.split_for(key, 0.0) == "train" for key in keys[:100])


def test_a_manifest_of_an_unknown_encoding_is_refused():
    doc = json.loads(records.manifest_to_json(_manifest()))
    assert (
        doc["encoding"] == records.ENCODING
        and records.manifest_from_json(json.dumps(doc)).encoding == records.ENCODING
    )
    doc["encoding"] = "miditok-remi-v9"
    with pytest.raises(
        records.DataError,
        match="names the token encoding 'miditok-remi-v9', which this version does not read",
    ):
        records.manifest_from_json(json.dumps(doc))


def test_read_output_reads_the_vocabulary_once_and_a_model_folder_needs_no_shards(
    tmp_path, monkeypatch
):
    (tmp_path / "manifest.json").write_text(records.manifest_to_json(_manifest()))
    (tmp_path / "vocab.json").write_text(records.vocab_to_json(["A4", "B4"]))
    reads = []
    original = reader.read_vocab
    monkeypatch.setattr(
        reader, "read_vocab", lambda directory: reads.append(directory) or original(directory)
    )
    # no shard on disk: a model/ folder
    manifest, vocab = reader.read_output(str(tmp_path), shards=False)
    assert vocab == ["A4", "B4"] and manifest.vocab_size == 2 and len(reads) == 1
    with pytest.raises(records.DataError, match="is missing"):
        reader.read_output(str(tmp_path))


@pytest.mark.parametrize(
    "tokens, key, fate",
    [
        (0, "a.mid", windowing.EMPTY),
        (8, "a.mid", windowing.TOO_SHORT),  # sequence length 8 needs 9 tokens for one window
        (9, "a.mid", None),  # its split
    ],
)
def test_piece_fate_is_empty_too_short_or_the_split(tokens, key, fate):
    got = windowing.piece_fate(tokens, key, 8, 1, 0.5)
    assert got == (fate or windowing.split_for(key, 0.5))
    assert windowing.piece_fate(40, "b.mid", 8, 3, 0.0) == records.TRAIN
