"""The pipeline's parts on their own: the file-system helpers and the tally of counts and dead
letters."""

from __future__ import annotations

from preprocessing import files, parse_files, records, transforms


def test_preparing_the_output_keeps_a_finished_output_and_removes_beam_temp_folders(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "train-abc-00000-of-00009.tfrecord").write_bytes(b"old")
    (tmp_path / "mine.txt").write_text("keep me")
    (tmp_path / "beam-temp-train-1a2b" / "sub").mkdir(parents=True)
    (tmp_path / "beam-temp-train-1a2b" / "sub" / "part").write_bytes(b"x")
    (tmp_path / "beam-temp-validation-3c4d").mkdir()  # an empty one too
    files.prepare_output(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "mine.txt",
        "train-abc-00000-of-00009.tfrecord",
    ]


def test_publishing_renames_the_manifest_last_and_stale_files_go_after_it(tmp_path):
    for name in (
        "train-00000-of-00002.tfrecord",
        "train-old-00000-of-00001.tfrecord",
        "validation-old-00000-of-00001.tfrecord.gz",
        "train-new-00000-of-00001.tfrecord",
        "vocab.json.dead1.tmp",
        "mine.txt",
        "vocab.json",
    ):
        (tmp_path / name).write_bytes(b"x")
    files.publish(
        str(tmp_path),
        [("dead_letter.jsonl", ""), ("vocab.json", "[]"), ("manifest.json", "{}")],
        "new",
    )
    assert (tmp_path / "vocab.json").read_text() == "[]" and (
        tmp_path / "manifest.json"
    ).read_text() == "{}"
    removed = files.remove_stale(str(tmp_path), ["train-new-00000-of-00001.tfrecord"])
    assert len(removed) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dead_letter.jsonl",
        "manifest.json",
        "mine.txt",
        "train-new-00000-of-00001.tfrecord",
        "vocab.json",
    ]


def test_input_patterns():
    assert files.input_pattern("gs://b/midi") == ("gs://b/midi/**", "gs://b/midi/")
    assert files.input_pattern("/data/midi/") == ("/data/midi/**", "/data/midi/")
    assert files.input_pattern("gs://b/midi/*.MID") == ("gs://b/midi/*.MID", "gs://b/midi/")
    assert files.input_pattern("/x/song.mid") == ("/x/song.mid", "/x/")
    assert files.file_key("gs://b/midi/sub/a.mid", "gs://b/midi/") == "sub/a.mid"
    assert files.is_midi_path("A.MIDI") and not files.is_midi_path("a.kar")


def test_shard_count_grows_with_input_size():
    assert files.choose_num_shards(10_000, 100, 1) == 1
    big = files.choose_num_shards(2 * 2**30, 100, 1)
    assert 1 < big <= files.MAX_SHARDS
    assert files.choose_num_shards(2 * 2**30, 100, 10) < big
    # spans at stride 100 store each token about twice, not 101 times as stride 1 does
    spans = files.choose_num_shards(2 * 2**30, 100, 100)
    assert 40 * spans < files.choose_num_shards(2 * 2**30, 100, 1)


def test_tally_adds_counts_and_sorts_dead_letters_and_matched_is_parsed_plus_failed():
    fn = transforms.TallyFn()
    piece = parse_files.Piece(path="/in/a.mid", key="a.mid", tokens=["C4"] * 12)
    first, second = fn.create_accumulator(), fn.create_accumulator()
    fn.add_input(first, transforms.piece_tally(piece, 8, 1, 0.0))
    fn.add_input(first, transforms.dead_letter_tally({"path": "/in/z.mid", "error": "truncated"}))
    fn.add_input(second, transforms.dead_letter_tally({"path": "/in/b.mid", "error": "empty file"}))
    tally = fn.extract_output(fn.merge_accumulators([first, second]))
    assert tally.counts["files_parsed"] == 1 and tally.counts["files_failed"] == 2
    assert tally.counts["files_matched"] == 3
    assert tally.counts["tokens"] == 12 and tally.counts["train_windows"] == 4
    assert tally.counts["train_spans"] == 4  # at stride 1, a span is a window
    assert [entry["path"] for entry in tally.dead_letters] == ["/in/b.mid", "/in/z.mid"]
    assert set(tally.counts) == set(records.COUNT_KEYS + records.SPAN_COUNT_KEYS)
    # no input at all: zero counts, no dead letters
    empty = fn.extract_output(fn.create_accumulator())
    assert all(value == 0 for value in empty.counts.values()) and empty.dead_letters == []
