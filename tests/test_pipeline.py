"""The Beam preprocessing pipeline on the DirectRunner, over real MIDI files written by music21."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
import pytest
from apache_beam.io import fileio
import tensorflow as tf

from preprocessing import pipeline, records, windowing

SEQ = 8
VALIDATION_FRACTION = 0.3  # puts piece_1 and piece_2 of the fixture into validation


def read_split(out: Path, manifest: records.Manifest, split: str) -> list[tuple[tuple[int, ...], int]]:
    """All windows of one split, read back with tf.data exactly as the trainer will."""
    files = [str(out / name) for name in manifest.shards(split)]
    dataset = tf.data.TFRecordDataset(files, compression_type=records.tf_compression_type(manifest.compression))
    spec = records.parse_spec(manifest.sequence_length)
    return [
        (tuple(ex["inputs"].numpy().tolist()), int(ex["target"]))
        for ex in dataset.map(lambda s: tf.io.parse_single_example(s, spec))
    ]


def expected_windows(token_lists: dict[str, list[str]], vocab: list[str], seq: int, stride: int, split: str):
    index = {token: i for i, token in enumerate(vocab)}
    found = []
    for name, tokens in token_lists.items():
        if windowing.split_for(name, VALIDATION_FRACTION) != split:
            continue
        ids = [index[t] for t in tokens]
        found += [(tuple(inputs), target) for inputs, target in windowing.windows(ids, seq, stride)]
    return Counter(found)


@pytest.fixture(scope="module")
def default_run(midi_corpus, tmp_path_factory):
    """One run with the default runner settings (DirectRunner, multi-processing over all cores)."""
    out = tmp_path_factory.mktemp("out_default")
    outcome = pipeline.run_pipeline(
        [
            "--input", str(midi_corpus["dir"]),
            "--output", str(out),
            "--sequence-length", str(SEQ),
            "--validation-fraction", str(VALIDATION_FRACTION),
            "--num-shards", "2",
        ]
    )
    return out, outcome


@pytest.mark.slow
def test_counts_vocabulary_and_windows_are_exact(midi_corpus, default_run):
    out, outcome = default_run
    manifest = outcome.manifest
    tokens = midi_corpus["tokens"]
    all_tokens = [t for toks in tokens.values() for t in toks]
    vocab = records.read_vocab(str(out))
    assert vocab == sorted(set(all_tokens))
    assert manifest.vocab_size == len(vocab) and manifest.vocab_hash == records.vocab_hash(vocab)

    c = manifest.counts
    n_files = len(tokens) + len(midi_corpus["bad"])
    assert c["files_matched"] == n_files  # notes.txt is not matched: wrong extension
    assert c["files_parsed"] == len(tokens)
    assert c["files_failed"] == len(midi_corpus["bad"])
    assert c["pieces_empty"] == 1 and c["pieces_too_short"] == 1
    assert c["tokens"] == len(all_tokens)
    for split in records.SPLITS:
        want = expected_windows(tokens, vocab, SEQ, 1, split)
        got = Counter(read_split(out, manifest, split))
        assert got == want, split
        assert c[f"{split}_windows"] == sum(want.values()) > 0
    # stride 1: sum of max(0, len - sequence_length) over pieces
    assert c["train_windows"] + c["validation_windows"] == sum(max(0, len(t) - SEQ) for t in tokens.values())


@pytest.mark.slow
def test_split_is_disjoint_by_piece(midi_corpus, default_run):
    out, outcome = default_run
    vocab = records.read_vocab(str(out))
    index = {token: i for i, token in enumerate(vocab)}
    origin = {}
    for name, tokens in midi_corpus["tokens"].items():
        ids = [index[t] for t in tokens]
        for window in windowing.windows(ids, SEQ):
            origin.setdefault((tuple(window[0]), window[1]), set()).add(name)
    pieces = {split: set() for split in records.SPLITS}
    for split in records.SPLITS:
        for window in read_split(out, outcome.manifest, split):
            pieces[split] |= origin[window]
    assert pieces["train"] and pieces["validation"]
    assert not pieces["train"] & pieces["validation"]
    assert outcome.manifest.counts["validation_pieces"] == len(pieces["validation"])


@pytest.mark.slow
def test_output_files_and_manifest(midi_corpus, default_run):
    out, outcome = default_run
    manifest = outcome.manifest
    assert manifest.train_shards == ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord")
    assert all((out / name).exists() for name in manifest.train_shards + manifest.validation_shards)
    assert json.loads((out / "vocab.json").read_text()) == records.read_vocab(str(out))
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["sequence_length"] == SEQ and on_disk["parts"] == "all" and on_disk["stride"] == 1
    assert on_disk["encoding"] == records.ENCODING
    assert not (out / ".lstm-composer-write-test").exists()
    assert records.read_manifest(str(out)) == manifest  # the trainer's reader accepts it


@pytest.mark.slow
def test_dead_letters_name_every_bad_file_with_a_reason(midi_corpus, default_run):
    out, _ = default_run
    lines = (out / "dead_letter.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert sorted(Path(e["path"]).name for e in entries) == sorted(midi_corpus["bad"])
    reasons = {Path(e["path"]).name: e["error"] for e in entries}
    assert "empty file" in reasons["empty.mid"]
    assert "truncated" in reasons["truncated.mid"]
    assert "not a MIDI file" in reasons["renamed.mid"]
    assert all(reason for reason in reasons.values())


@pytest.mark.slow
def test_beam_counters_agree_with_the_manifest(default_run):
    _, outcome = default_run
    counts = outcome.manifest.counts
    for key in ("files_matched", "files_parsed", "files_failed", "pieces_empty", "pieces_too_short",
                "tokens", "train_windows", "validation_windows"):
        assert outcome.metrics.get(key, 0) == counts[key], key


@pytest.mark.slow
def test_two_runs_give_the_same_vocabulary_and_windows(midi_corpus, default_run, tmp_path):
    out, first = default_run
    second = pipeline.run_pipeline(
        [
            "--input", str(midi_corpus["dir"]), "--output", str(tmp_path),
            "--sequence-length", str(SEQ), "--validation-fraction", str(VALIDATION_FRACTION),
            "--num-shards", "3", "--direct_running_mode", "in_memory",
        ]
    )
    assert records.read_vocab(str(tmp_path)) == records.read_vocab(str(out))
    for split in records.SPLITS:
        assert Counter(read_split(tmp_path, second.manifest, split)) == Counter(read_split(out, first.manifest, split))
    assert len(second.manifest.train_shards) == 3


@pytest.mark.slow
def test_stride_gzip_and_first_part_mode(midi_corpus, tmp_path):
    stride = 3
    outcome = pipeline.run_pipeline(
        [
            "--input", str(midi_corpus["dir"]) + "/*", "--output", str(tmp_path),
            "--sequence-length", str(SEQ), "--stride", str(stride), "--validation-fraction", "0",
            "--compression", "gzip", "--parts", "first", "--direct_running_mode", "in_memory",
        ]
    )
    manifest = outcome.manifest
    assert manifest.parts == "first" and manifest.compression == "gzip"
    assert all(name.endswith(".tfrecord.gz") for name in manifest.train_shards)
    # parts=first keeps the first instrument only: the chorale's melody, without the bass
    tokens = dict(midi_corpus["tokens"])
    tokens["Chorale.MIDI"] = ["E4", "F#4", "G4", "A4", "B4", "C5", "D5", "E5", "D5", "C5", "B4", "A4"]
    expected = sum(windowing.window_count(len(t), SEQ, stride) for t in tokens.values())
    got = read_split(tmp_path, manifest, "train")
    assert len(got) == expected == manifest.counts["train_windows"]
    assert manifest.counts["validation_windows"] == 0


def test_no_input_files_is_one_clear_message(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("no music here")
    code = pipeline.main(["--input", str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no MIDI files" in err and "Traceback" not in err


def test_unknown_flag_is_refused_not_discarded(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        pipeline.main(["--input", str(tmp_path), "--output", str(tmp_path), "--sequence-lenght", "8"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --sequence-lenght" in err


def test_beam_flags_pass_through_and_local_defaults_are_set():
    args, beam_args = pipeline.parse_args(["--output", "x", "--temp_location", "/tmp/beam"])
    assert "--temp_location" in beam_args
    assert "--runner=DirectRunner" in beam_args and "--direct_running_mode=multi_processing" in beam_args
    _, beam_args = pipeline.parse_args(["--output", "x", "--runner", "DataflowRunner", "--project", "p-123"])
    assert not any(a.startswith("--direct") for a in beam_args)


@pytest.mark.parametrize("flag, value, message", [
    ("--sequence-length", "0", "--sequence-length must be at least 1"),
    ("--validation-fraction", "1.5", "--validation-fraction must be"),
    ("--parts", "second", "invalid choice"),
])
def test_bad_values_are_refused(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        pipeline.parse_args(["--output", "x", flag, value])
    assert message in capsys.readouterr().err


def test_unwritable_output_is_one_clear_message(midi_corpus, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = pipeline.main(["--input", str(midi_corpus["dir"]), "--output", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to --output" in err and "Traceback" not in err


@pytest.mark.slow
def test_only_bad_files_finish_with_dead_letters_and_a_clear_error(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mid").write_bytes(b"garbage")
    (src / "b.mid").write_bytes(b"")
    out = tmp_path / "out"
    code = pipeline.main(["--input", str(src), "--output", str(out), "--direct_running_mode", "in_memory"])
    err = capsys.readouterr().err
    assert code == 1 and "no training windows were produced" in err
    assert len((out / "dead_letter.jsonl").read_text().splitlines()) == 2
    manifest = records.read_manifest(str(out))
    assert manifest.counts["files_failed"] == 2 and manifest.vocab_size == 0


def test_a_rerun_removes_the_old_manifest_and_shards_first(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "train-00000-of-00009.tfrecord").write_bytes(b"old")
    (tmp_path / "mine.txt").write_text("keep me")
    pipeline.prepare_output(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_input_patterns():
    assert pipeline.input_pattern("gs://b/midi") == ("gs://b/midi/**", "gs://b/midi/")
    assert pipeline.input_pattern("/data/midi/") == ("/data/midi/**", "/data/midi/")
    assert pipeline.input_pattern("gs://b/midi/*.MID") == ("gs://b/midi/*.MID", "gs://b/midi/")
    assert pipeline.input_pattern("/x/song.mid") == ("/x/song.mid", "/x/")
    assert pipeline.file_key("gs://b/midi/sub/a.mid", "gs://b/midi/") == "sub/a.mid"
    assert pipeline.is_midi_path("A.MIDI") and not pipeline.is_midi_path("a.kar")


def test_shard_count_grows_with_input_size():
    assert pipeline.choose_num_shards(10_000, 100, 1) == 1
    big = pipeline.choose_num_shards(2 * 2**30, 100, 1)
    assert 1 < big <= pipeline.MAX_SHARDS
    assert pipeline.choose_num_shards(2 * 2**30, 100, 10) < big


def test_tally_adds_counts_and_sorts_dead_letters_and_matched_is_parsed_plus_failed():
    fn = pipeline.TallyFn()
    piece = pipeline.Piece(path="/in/a.mid", key="a.mid", tokens=["C4"] * 12)
    first, second = fn.create_accumulator(), fn.create_accumulator()
    fn.add_input(first, pipeline.piece_tally(piece, 8, 1, 0.0))
    fn.add_input(first, pipeline.dead_letter_tally({"path": "/in/z.mid", "error": "truncated"}))
    fn.add_input(second, pipeline.dead_letter_tally({"path": "/in/b.mid", "error": "empty file"}))
    tally = fn.extract_output(fn.merge_accumulators([first, second]))
    assert tally.counts["files_parsed"] == 1 and tally.counts["files_failed"] == 2
    assert tally.counts["files_matched"] == 3
    assert tally.counts["tokens"] == 12 and tally.counts["train_windows"] == 4
    assert [entry["path"] for entry in tally.dead_letters] == ["/in/b.mid", "/in/z.mid"]
    assert set(tally.counts) == set(records.COUNT_KEYS)
    empty = fn.extract_output(fn.create_accumulator())  # no input at all: zero counts, no dead letters
    assert all(value == 0 for value in empty.counts.values()) and empty.dead_letters == []


def test_only_a_beam_worker_process_freezes_its_objects(monkeypatch):
    assert not pipeline.in_beam_worker_process()  # pytest's own process: never frozen
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", SimpleNamespace(name=pipeline.BEAM_WORKER_MAIN))
    assert pipeline.in_beam_worker_process()

    monkeypatch.setattr(pipeline, "_frozen", False)
    before = gc.get_freeze_count()
    try:
        pipeline.ParseMidi("all", "/").setup()
        frozen = gc.get_freeze_count()
        made_later = [[index] for index in range(5_000)]  # noqa: F841 - alive, tracked, not frozen
        pipeline.ParseMidi("all", "/").setup()  # a second DoFn instance in the same worker: no-op
        assert gc.get_freeze_count() < frozen + 5_000
    finally:
        gc.unfreeze()
    assert frozen > before + 10_000  # the imported modules' objects, at least


def test_balance_by_size_is_longest_first_to_the_lightest_bucket():
    sizes = [5, 1, 9, 3, 7, 2, 8]
    assignment = pipeline.balance_by_size(sizes, 2)
    loads = [sum(s for s, b in zip(sizes, assignment) if b == bucket) for bucket in (0, 1)]
    # 9→0, 8→1, 7→1, 5→0, 3→0, 2→1, 1→0: loads 18 and 17, where alternating in list order gives 29 and 6
    assert assignment == [0, 0, 0, 0, 1, 1, 1]
    assert sorted(loads) == [17, 18]
    assert pipeline.balance_by_size(sizes, 1) == [0] * len(sizes)
    assert pipeline.balance_by_size([], 3) == []
    assert sorted(pipeline.balance_by_size([4, 4, 4], 5)) == [0, 1, 2]  # more buckets than files
    with pytest.raises(ValueError):
        pipeline.balance_by_size(sizes, 0)


def test_the_direct_runner_groups_files_per_worker_and_other_runners_reshuffle(midi_corpus):
    from apache_beam.options.pipeline_options import PipelineOptions

    def workers(*flags):
        return pipeline.direct_runner_workers(PipelineOptions(list(flags)))

    assert workers("--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3") == 3
    assert workers("--runner=DirectRunner", "--direct_running_mode=in_memory") == 1
    assert workers("--runner=DataflowRunner") is None

    def leaf_names(local_workers):
        p = beam.Pipeline()
        args, _ = pipeline.parse_args(["--input", str(midi_corpus["dir"]), "--output", "/tmp/unused"])
        pipeline.build(p, args, str(midi_corpus["dir"]) + "/**", str(midi_corpus["dir"]) + "/", 1, local_workers)
        return {t.unique_name for t in p.to_runner_api().components.transforms.values()}

    assert "SpreadFiles/GroupPerWorker" in leaf_names(2)
    assert not any(name.startswith("SpreadFiles/Reshuffle") for name in leaf_names(2))
    assert "SpreadFiles/Reshuffle" in leaf_names(None)


@pytest.mark.slow
def test_each_direct_runner_worker_parses_one_size_balanced_share(midi_corpus):
    """SpreadFiles relies on the DirectRunner giving each worker one group: check it on real workers."""
    from apache_beam.testing.util import assert_that

    pattern = str(midi_corpus["dir"]) + "/**"
    sizes = {m.path: m.size_in_bytes for m in pipeline.match_inputs(pattern)}

    def check(pid_paths):
        by_worker: dict[int, list[str]] = {}
        for pid, path in pid_paths:
            by_worker.setdefault(pid, []).append(path)
        assert sorted(path for _, path in pid_paths) == sorted(sizes)  # every file once
        assert len(by_worker) == 2  # both worker processes parsed
        loads = sorted(sum(sizes[path] for path in paths) for paths in by_worker.values())
        assert loads[1] - loads[0] <= max(sizes.values())  # LPT: within one file of each other

    options = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with beam.Pipeline(argv=options) as p:
        parsed_where = (
            p
            | fileio.MatchFiles(pattern)
            | beam.Filter(lambda m: pipeline.is_midi_path(m.path))
            | pipeline.SpreadFiles(local_workers=2)
            | beam.Map(lambda m: (os.getpid(), m.path))
        )
        assert_that(parsed_where, check)
