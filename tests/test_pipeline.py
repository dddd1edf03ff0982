"""The Beam preprocessing pipeline on the DirectRunner, over real MIDI files written by music21."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from stored import spans_in, trainer_windows, windows_in

from preprocessing import options, pipeline, reader, records, run_summary, windowing

SEQ = 8
VALIDATION_FRACTION = 0.3  # puts piece_1 and piece_2 of the fixture into validation


def expected_windows(
    token_lists: dict[str, list[str]],
    vocab: list[str],
    seq: int,
    stride: int,
    split: str,
    fraction: float = VALIDATION_FRACTION,
):
    index = {token: i for i, token in enumerate(vocab)}
    found = []
    for name, tokens in token_lists.items():
        if windowing.split_for(name, fraction) != split:
            continue
        ids = [index[t] for t in tokens]
        found += [(tuple(inputs), target) for inputs, target in windowing.windows(ids, seq, stride)]
    return Counter(found)


@pytest.fixture(scope="module")
def default_run(midi_corpus, tmp_path_factory):
    """One run with the default runner settings (DirectRunner in memory, a parse child per core)."""
    out = tmp_path_factory.mktemp("out_default")
    outcome = pipeline.run(
        [
            "--input",
            str(midi_corpus["dir"]),
            "--output",
            str(out),
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(VALIDATION_FRACTION),
            "--num-shards",
            "2",
        ]
    )
    return out, outcome


@pytest.mark.slow
def test_counts_vocabulary_and_windows_are_exact(midi_corpus, default_run):
    out, outcome = default_run
    manifest = outcome.manifest
    tokens = midi_corpus["tokens"]
    all_tokens = [t for toks in tokens.values() for t in toks]
    vocab = reader.read_vocab(str(out))
    assert vocab == sorted(set(all_tokens))
    assert manifest.vocab_size == len(vocab) and manifest.vocab_hash == records.vocab_hash(vocab)

    c = manifest.counts
    n_files = len(tokens) + len(midi_corpus["bad"])
    assert c["files_matched"] == n_files  # reference.txt is not matched: wrong extension
    assert c["files_parsed"] == len(tokens)
    assert c["files_failed"] == len(midi_corpus["bad"])
    assert c["pieces_empty"] == 1 and c["pieces_too_short"] == 1
    assert c["tokens"] == len(all_tokens)
    for split in records.SPLITS:
        want = expected_windows(tokens, vocab, SEQ, 1, split)
        assert trainer_windows(out, split) == want == windows_in(out, manifest, split), split
        assert c[f"{split}_windows"] == sum(want.values()) > 0
        # spans of SEQ + stride tokens, stride SEQ by default: every token stored about twice
        spans = spans_in(out, manifest, split)
        assert manifest.stride == SEQ and len(spans) == c[f"{split}_spans"]
        assert sum(map(len, spans)) <= 2 * sum(
            len(t)
            for name, t in tokens.items()
            if len(t) > SEQ and windowing.split_for(name, VALIDATION_FRACTION) == split
        )
    # stride 1: sum of max(0, len - sequence_length) over pieces
    assert c["train_windows"] + c["validation_windows"] == sum(
        max(0, len(t) - SEQ) for t in tokens.values()
    )


@pytest.mark.slow
def test_split_is_disjoint_by_piece(midi_corpus, default_run):
    out, outcome = default_run
    vocab = reader.read_vocab(str(out))
    index = {token: i for i, token in enumerate(vocab)}
    origin = {}
    for name, tokens in midi_corpus["tokens"].items():
        ids = [index[t] for t in tokens]
        for window in windowing.windows(ids, SEQ):
            origin.setdefault((tuple(window[0]), window[1]), set()).add(name)
    pieces = {split: set() for split in records.SPLITS}
    for split in records.SPLITS:
        for window in windows_in(out, outcome.manifest, split):
            pieces[split] |= origin[window]
    assert pieces["train"] and pieces["validation"]
    assert not pieces["train"] & pieces["validation"]
    assert outcome.manifest.counts["validation_pieces"] == len(pieces["validation"])


@pytest.mark.slow
def test_output_files_and_manifest(midi_corpus, default_run):
    out, outcome = default_run
    manifest = outcome.manifest
    run = manifest.run_id
    assert len(run) == 8 and manifest.shards("train") == (
        f"train-{run}-00000-of-00002.tfrecord",
        f"train-{run}-00001-of-00002.tfrecord",
    )
    for split in records.SPLITS:  # every entry is what the file holds: size, hash, record count
        for shard in manifest.shard_entries(split):
            data = (out / shard.name).read_bytes()
            assert (shard.size, shard.sha256) == (len(data), hashlib.sha256(data).hexdigest())
            assert (
                shard.records == sum(1 for _ in tf.data.TFRecordDataset(str(out / shard.name))) > 0
            )
        assert sum(shard.records for shard in manifest.shard_entries(split)) == manifest.records(
            split
        )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "vocab.json",
            "manifest.json",
            "dead_letter.jsonl",
            *manifest.shards("train"),
            *manifest.shards("validation"),
        ]
    )
    assert json.loads((out / "vocab.json").read_text()) == reader.read_vocab(str(out))
    on_disk = json.loads((out / "manifest.json").read_text())
    assert (
        on_disk["sequence_length"] == SEQ and on_disk["parts"] == "all" and on_disk["stride"] == SEQ
    )
    assert on_disk["encoding"] == records.ENCODING
    assert not (out / ".lstm-composer-write-test").exists()
    assert reader.read_manifest(str(out)) == manifest  # the trainer's reader accepts it


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
    for key in (
        "files_matched",
        "files_parsed",
        "files_failed",
        "pieces_empty",
        "pieces_too_short",
        "tokens",
        "train_windows",
        "validation_windows",
        "train_spans",
        "validation_spans",
    ):
        assert outcome.metrics.get(key, 0) == counts[key], key


@pytest.mark.slow
def test_two_runs_give_the_same_vocabulary_and_windows(midi_corpus, default_run, tmp_path):
    out, first = default_run
    second = pipeline.run(
        [
            "--input",
            str(midi_corpus["dir"]),
            "--output",
            str(tmp_path),
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(VALIDATION_FRACTION),
            "--num-shards",
            "3",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    assert reader.read_vocab(str(tmp_path)) == reader.read_vocab(str(out))
    for split in records.SPLITS:
        assert windows_in(tmp_path, second.manifest, split) == windows_in(
            out, first.manifest, split
        )
    assert len(second.manifest.train_shards) == 3
    again = pipeline.run(
        [
            "--input",
            str(midi_corpus["dir"]),
            "--output",
            str(tmp_path / "again"),
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(VALIDATION_FRACTION),
            "--num-shards",
            "2",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    # the same flags: byte for byte the same shards (under other names)
    for split in records.SPLITS:
        assert [s.sha256 for s in again.manifest.shard_entries(split)] == [
            s.sha256 for s in first.manifest.shard_entries(split)
        ]
    assert again.manifest.run_id != first.manifest.run_id


@pytest.mark.slow
def test_stride_gzip_and_first_part_mode(midi_corpus, tmp_path):
    stride = 3
    outcome = pipeline.run(
        [
            "--input",
            str(midi_corpus["dir"]) + "/*",
            "--output",
            str(tmp_path),
            "--sequence-length",
            str(SEQ),
            "--stride",
            str(stride),
            "--validation-fraction",
            "0",
            "--compression",
            "gzip",
            "--parts",
            "first",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    manifest = outcome.manifest
    assert manifest.parts == "first" and manifest.compression == "gzip"
    assert all(name.endswith(".tfrecord.gz") for name in manifest.shards("train"))
    # a split without windows lists no shard (and has no file)
    assert manifest.validation_shards == ()
    assert not list(tmp_path.glob("validation-*"))
    assert reader.read_output(str(tmp_path), full=True)[0] == manifest
    # parts=first keeps the first instrument only: the chorale's melody, without the bass
    tokens = dict(midi_corpus["tokens"])
    tokens["Chorale.MIDI"] = [
        "E4",
        "F#4",
        "G4",
        "A4",
        "B4",
        "C5",
        "D5",
        "E5",
        "D5",
        "C5",
        "B4",
        "A4",
    ]
    vocab = reader.read_vocab(str(tmp_path))
    expected = expected_windows(tokens, vocab, SEQ, 1, "train", fraction=0.0)
    # spans at stride 3 still hold every window at stride 1, each once
    assert windows_in(tmp_path, manifest, "train") == expected
    assert sum(expected.values()) == manifest.counts["train_windows"]
    spans = sum(windowing.window_count(len(t), SEQ, stride) for t in tokens.values())
    assert manifest.counts["train_spans"] == spans == len(spans_in(tmp_path, manifest, "train"))
    assert manifest.counts["validation_windows"] == 0


def test_no_input_files_is_one_clear_message(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("no music here")
    code = pipeline.main(["--input", str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no MIDI files" in err and "Traceback" not in err


def test_unknown_flag_is_refused_not_discarded(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        pipeline.main(
            ["--input", str(tmp_path), "--output", str(tmp_path), "--sequence-lenght", "8"]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --sequence-lenght" in err


def test_beam_flags_pass_through_and_local_defaults_are_set():
    args, beam_args = options.parse_args(["--output", "x", "--temp_location", "/tmp/beam"])
    assert "--temp_location" in beam_args
    assert "--runner=DirectRunner" in beam_args and "--direct_running_mode=in_memory" in beam_args
    # a worker count asks for worker processes; a running mode the user chose is kept
    _, beam_args = options.parse_args(["--output", "x", "--direct_num_workers", "3"])
    assert "--direct_running_mode=multi_processing" in beam_args
    _, beam_args = options.parse_args(["--output", "x", "--direct_running_mode=multi_threading"])
    assert [a for a in beam_args if a.startswith("--direct_running_mode")] == [
        "--direct_running_mode=multi_threading"
    ]
    _, beam_args = options.parse_args(
        ["--output", "x", "--runner", "DataflowRunner", "--project", "p-123"]
    )
    assert not any(a.startswith("--direct") for a in beam_args)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--sequence-length", "0", "--sequence-length must be at least 1"),
        ("--validation-fraction", "1.5", "--validation-fraction must be"),
        ("--parts", "second", "invalid choice"),
        ("--stride", "0", "--stride must be at least 1 (default: the sequence length), not 0"),
        ("--stride", "-2", "--stride must be at least 1"),
    ],
)
def test_bad_values_are_refused(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["--output", "x", flag, value])
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert message in line


def test_the_stride_defaults_to_the_sequence_length():
    assert options.parse_args(["--output", "x", "--sequence-length", "48"])[0].stride == 48
    assert options.parse_args(["--output", "x"])[0].stride == 100
    assert options.parse_args(["--output", "x", "--stride", "5"])[0].stride == 5


def test_unwritable_output_is_one_clear_message(midi_corpus, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = pipeline.main(["--input", str(midi_corpus["dir"]), "--output", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to --output" in err and "Traceback" not in err
    code = pipeline.main(["--input", str(midi_corpus["dir"]), "--output", str(blocker)])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line == (
        f"lstm-composer preprocess: error: --output {blocker} is a file, not a folder; "
        "give the folder to write into"
    )
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_only_bad_files_publish_nothing_and_say_why_in_one_line(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mid").write_bytes(b"garbage")
    (src / "b.mid").write_bytes(b"")
    out = tmp_path / "out"
    code = pipeline.main(
        ["--input", str(src), "--output", str(out), "--direct_running_mode", "in_memory"]
    )
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()[-1:]
    assert code == 1 and line.startswith("lstm-composer preprocess: error: no training windows")
    assert "nothing was published" in line and "preprocessing failed" in captured.out
    (report,) = out.iterdir()  # no manifest, vocabulary or dead-letter file: only the report
    assert report.name.startswith("failed-run-") and str(report) in line
    document = json.loads(report.read_text())
    assert document["manifest"]["counts"]["files_failed"] == 2
    assert sorted(Path(e["path"]).name for e in document["dead_letters"]) == ["a.mid", "b.mid"]


@pytest.mark.slow
def test_no_piece_in_validation_is_said_with_why_and_what_to_do(tmp_path, capsys):
    from conftest import patterned_tokens, write_tokens_midi

    src = tmp_path / "in"
    src.mkdir()
    names = [
        f"tune_{i}.mid"
        for i in range(20)
        if windowing.split_for(f"tune_{i}.mid", 0.1) == records.TRAIN
    ][:2]
    for seed, name in enumerate(names):
        write_tokens_midi(src / name, patterned_tokens(seed, 30))
    write_tokens_midi(src / "short.mid", ["C4", "D4"])
    code = pipeline.main(
        [
            "--input",
            str(src),
            "--output",
            str(tmp_path / "out"),
            "--sequence-length",
            str(SEQ),
            "--direct_running_mode",
            "in_memory",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "no piece went to validation" in line and "none of the 2 usable piece(s)" in line
    assert "--validation-fraction 0.1" in line and "(1 more empty or too short)" in line
    assert "add more pieces or raise --validation-fraction" in line


def test_validation_warning_only_when_nothing_is_held_out():
    def manifest(fraction: float, **counts) -> records.Manifest:
        return records.Manifest(
            sequence_length=SEQ,
            stride=1,
            vocab_size=3,
            vocab_hash="h",
            parts="all",
            compression="none",
            validation_fraction=fraction,
            counts=counts,
            train_shards=("t",),
            validation_shards=(),
        )

    assert (
        run_summary.validation_warning(manifest(0.1, train_windows=50, validation_windows=5))
        is None
    )
    # an error
    assert (
        run_summary.validation_warning(manifest(0.1, train_windows=0, validation_windows=0)) is None
    )
    assert "--validation-fraction 0" in run_summary.validation_warning(
        manifest(0.0, train_windows=50, train_pieces=3)
    )
    assert "none of the 3 usable" in run_summary.validation_warning(
        manifest(0.2, train_windows=50, train_pieces=3)
    )
