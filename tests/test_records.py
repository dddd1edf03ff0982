"""The record format (both layouts, the manifest) and the pure windowing functions."""

from __future__ import annotations

import fnmatch
import hashlib
import json

import pytest
import tensorflow as tf

from preprocessing import examples, reader, records, shards, windowing


def test_span_bytes_are_a_tf_train_example():
    data = examples.encode_span([1, 2, 3, 40000, 5])
    parsed = tf.io.parse_single_example(data, examples.span_spec())
    assert parsed["tokens"].numpy().tolist() == [1, 2, 3, 40000, 5]
    example = tf.train.Example.FromString(data)
    assert list(example.features.feature["tokens"].int64_list.value) == [1, 2, 3, 40000, 5]
    assert examples.decode_span(data) == [1, 2, 3, 40000, 5]
    # one byte per id below 128, plus a fixed frame: bytes close to the ids' own size
    assert len(examples.encode_span(list(range(100)))) < 100 + 24


def test_window_bytes_of_format_2_are_a_tf_train_example():
    data = examples.encode_example([1, 2, 3, 40000], 7)
    parsed = tf.io.parse_single_example(data, examples.parse_spec(4))
    assert parsed["inputs"].numpy().tolist() == [1, 2, 3, 40000]
    assert int(parsed["target"]) == 7
    example = tf.train.Example.FromString(data)
    assert list(example.features.feature["inputs"].int64_list.value) == [1, 2, 3, 40000]
    assert examples.decode_example(data) == ([1, 2, 3, 40000], 7)


def test_wrong_sequence_length_fails_to_parse():
    data = examples.encode_example([1, 2, 3], 7)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_single_example(data, examples.parse_spec(4))


@pytest.mark.parametrize(
    "length, seq, stride",
    [(9, 8, 8), (30, 8, 8), (31, 8, 8), (32, 8, 8), (33, 8, 1), (50, 8, 3), (50, 8, 20), (9, 8, 1)],
)
def test_spans_hold_every_window_exactly_once_and_the_tail(length, seq, stride):
    ids = list(range(100, 100 + length))
    spans = windowing.spans(ids, seq, stride)
    assert len(spans) == windowing.window_count(length, seq, stride)
    assert all(seq + 1 <= len(span) <= seq + stride for span in spans)
    from_spans = [w for span in spans for w in windowing.windows(span, seq)]
    assert from_spans == list(windowing.windows(ids, seq))  # every one, once, in order
    assert spans[-1][-1] == ids[-1]  # the tail is stored
    stored = sum(map(len, spans))
    assert stored <= len(ids) * (seq + stride) / stride + seq + stride
    # consecutive spans share exactly the sequence length's tokens: what reassembly chains on
    assert windowing.reassemble(reversed(spans), seq) == [ids]


def test_stride_1_spans_are_the_old_windows():
    ids = [5, 3, 9, 1, 4, 4, 7]
    assert [(s[:-1], s[-1]) for s in windowing.spans(ids, 3, 1)] == list(windowing.windows(ids, 3))


def test_reassemble_chains_spans_of_several_pieces_in_any_order():
    pieces = [[7, 1, 2, 5, 1, 2, 6, 1, 2, 9, 4, 4, 8], list(range(20, 31))]
    spans = [span for piece in pieces for span in windowing.spans(piece, 3, 2)]
    assert sorted(windowing.reassemble(spans[::-1], 3)) == sorted(pieces)


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
    [examples.encode_span([0, 1, 0, 1, 0, 1, 0, 1, i % 2]) for i in range(5)], "none"
)


def _manifest(**overrides) -> records.Manifest:
    fields = {
        "sequence_length": 8,
        "stride": 8,
        "vocab_size": 2,
        "vocab_hash": records.vocab_hash(["A4", "B4"]),
        "parts": "all",
        "compression": "none",
        "validation_fraction": 0.1,
        "counts": {"train_windows": 5, "train_spans": 5},
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
    assert again.records("train") == 5 and again.layout == records.SPANS
    doc = json.loads(records.manifest_to_json(manifest))
    assert set(doc["counts"]) == set(records.COUNT_KEYS + records.SPAN_COUNT_KEYS)
    assert doc["format_version"] == 3 and doc["layout"] == "spans"
    assert "transposition_hash" not in doc and "transpose" not in doc


def test_a_format_2_manifest_reads_as_stored_windows():
    old = _manifest(format_version=2, layout=records.WINDOWS, stride=3, counts={"train_windows": 5})
    doc = json.loads(records.manifest_to_json(old))
    assert "layout" not in doc and set(doc["counts"]) == set(records.COUNT_KEYS)
    doc["layout"] = "spans"  # whatever a format-2 document says, it stored windows
    again = records.manifest_from_json(json.dumps(doc))
    assert again.layout == records.WINDOWS and again.records("train") == 5
    assert not again.every_window and again.record_overlap == 8 + 1 - 3
    assert _manifest().every_window and _manifest().record_overlap == 8
    assert (
        not again.shifted_when_read
        and not _manifest(transpose=2, format_version=2, layout=records.WINDOWS).shifted_when_read
    )
    assert _manifest(transpose=2).shifted_when_read


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 4}, "has format_version 4, this code reads 2 and 3: run it again"),
        (
            {"layout": "pieces"},
            "names the record layout 'pieces', which this version does not read",
        ),
        ({"layout": None}, r"lacks \['layout'\]"),
    ],
)
def test_a_manifest_this_version_cannot_read_is_refused_in_one_line(change, message):
    doc = json.loads(records.manifest_to_json(_manifest()))
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(records.DataError, match=message) as caught:
        records.manifest_from_json(json.dumps(doc), "run it again")
    assert "\n" not in str(caught.value)


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
