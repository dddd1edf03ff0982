"""Issue 10, point 4: a rerun of the pipeline into a finished output loses nothing.

The old output (manifest, shards, vocabulary) stays readable until the new manifest lands; a run
that dies after writing its shards leaves it as it was; a run that finishes leaves only its own
files, with the vocabulary and dead letters that match its manifest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import patterned_tokens, write_tokens_midi

from preprocessing import pipeline, records
from trainer import data as data_lib


def run(input_dir: Path, out: Path, *flags: str) -> records.Manifest:
    return pipeline.run(
        [
            "--input",
            str(input_dir),
            "--output",
            str(out),
            "--sequence-length",
            "8",
            "--direct_running_mode",
            "in_memory",
            *flags,
        ]
    ).manifest


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def assert_finished_output(out: Path, manifest: records.Manifest) -> None:
    """``out`` is ``manifest``'s output, loadable by the trainer with every shard hashed in full."""
    data = data_lib.load(str(out), full=True)
    assert data.manifest == manifest
    assert records.vocab_hash(list(data.vocab)) == manifest.vocab_hash


@pytest.fixture()
def inputs(training_midi_dir, tmp_path):
    """Two inputs with different music: the first has a file that fails to parse, the second another
    vocabulary (octave 5) and no bad file, so every file of the two outputs differs."""
    other = tmp_path / "other_midi"
    other.mkdir()
    for index in range(5):
        tokens = [
            t.replace("3", "5").replace("4", "5") if t[0].isalpha() else t
            for t in patterned_tokens(200 + index, 80)
        ]
        write_tokens_midi(other / f"high_{index}.mid", tokens)
    first = tmp_path / "first_midi"
    first.mkdir()
    for path in sorted(training_midi_dir.iterdir())[:6]:
        (first / path.name).write_bytes(path.read_bytes())
    (first / "broken.mid").write_bytes(b"MThd but not really")
    return first, other


@pytest.mark.slow
def test_a_rerun_that_fails_after_writing_its_shards_leaves_the_old_output_readable(
    inputs, tmp_path
):
    first, other = inputs
    out = tmp_path / "out"
    old = run(first, out, "--num-shards", "2", "--validation-fraction", "0.3")
    assert old.counts["files_failed"] == 1
    before = snapshot(out)
    # Make the last step fail where it publishes its files: after every shard of the new run is
    # written.
    (out / records.DEAD_LETTER_FILE).unlink()
    (out / records.DEAD_LETTER_FILE).mkdir()
    (out / records.DEAD_LETTER_FILE / "in-the-way").write_text("")
    with pytest.raises(
        Exception, match="dead_letter.jsonl"
    ):  # whatever the runner wraps the error in
        run(other, out, "--num-shards", "3", "--validation-fraction", "0.2")
    new_shards = [p.name for p in out.glob("train-*") if p.name not in old.shards("train")]
    assert len(new_shards) == 3  # the failed run got as far as its shards ...
    for name, content in before.items():  # ... and the old output is byte for byte still there
        if name != records.DEAD_LETTER_FILE:
            assert (out / name).read_bytes() == content, name
    assert_finished_output(out, old)

    # The next run that finishes replaces it, and cleans up after both.
    (out / records.DEAD_LETTER_FILE / "in-the-way").unlink()
    (out / records.DEAD_LETTER_FILE).rmdir()
    (out / "beam-temp-train-5f1e2d").mkdir()
    (out / "beam-temp-train-5f1e2d" / "0a1b.tfrecord").write_bytes(b"left by an interrupted run")
    new = run(other, out, "--num-shards", "3", "--validation-fraction", "0.2")
    assert new.vocab_hash != old.vocab_hash and new.counts["files_failed"] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "manifest.json",
            "vocab.json",
            "dead_letter.jsonl",
            *new.shards("train"),
            *new.shards("validation"),
        ]
    )
    # the old run's dead letter went with it
    assert (out / records.DEAD_LETTER_FILE).read_text() == ""
    assert_finished_output(out, new)


@pytest.mark.slow
def test_a_rerun_killed_midway_leaves_a_finished_output(inputs, tmp_path):
    """SIGTERM as soon as the rerun's first shard exists: whatever it had done by then, the
    folder holds a complete output the trainer accepts, the old one (while the new manifest has
    not landed)."""
    first, other = inputs
    out = tmp_path / "out"
    old = run(first, out, "--num-shards", "2", "--validation-fraction", "0.3")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rerun = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "preprocessing.pipeline",
            "--input",
            str(other),
            "--output",
            str(out),
            "--sequence-length",
            "8",
            "--num-shards",
            "3",
            "--direct_running_mode",
            "in_memory",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and rerun.poll() is None:
            if any(p.name not in old.shards("train") for p in out.glob("train-*")):
                rerun.send_signal(signal.SIGTERM)
                break
            time.sleep(0.005)
        rerun.wait(timeout=60)
    finally:
        if rerun.poll() is None:
            rerun.kill()
            rerun.wait()
    assert rerun.returncode == -signal.SIGTERM or rerun.returncode == 0, (
        rerun.stderr.read().decode()[-2000:]
    )
    # Never neither: the old output (the kill came before the new manifest, as nearly always) or the
    # new.
    manifest = records.manifest_from_json((out / "manifest.json").read_text())
    assert manifest == old or manifest.run_id != old.run_id
    assert_finished_output(out, manifest)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["reference", "remi"])
def test_a_rerun_of_only_failing_files_publishes_nothing(inputs, tmp_path, capsys, encoding):
    """Issue 18: a finished output, then a rerun into it of a corrupt, a truncated and a no-notes
    file. The rerun fails in one line and every file of the finished output is as it was; the
    next finished run removes the failed run's report with the rest it replaces."""
    first, other = inputs
    out = tmp_path / "out"
    old = run(first, out, "--encoding", encoding)
    before = snapshot(out)
    failing = tmp_path / "failing"
    failing.mkdir()
    good = sorted(first.glob("*.mid"))[0].read_bytes()
    (failing / "corrupt.mid").write_bytes(b"MThd" + bytes(range(40)))
    (failing / "truncated.mid").write_bytes(good[: len(good) // 2])
    write_tokens_midi(failing / "no_notes.mid", [])
    argv = ["--input", str(failing), "--output", str(out), "--encoding", encoding]
    code = pipeline.main([*argv, "--sequence-length", "8", "--direct_running_mode", "in_memory"])
    err = capsys.readouterr().err
    assert code == 1 and "nothing was published" in err and err.count("\n") == 1
    reports = [name for name in snapshot(out) if name.startswith("failed-run-")]
    assert len(reports) == 1
    assert {name: data for name, data in snapshot(out).items() if name not in reports} == before
    assert_finished_output(out, old)
    new = run(other, out, "--encoding", encoding)
    assert not [name for name in snapshot(out) if name.startswith("failed-run-")]
    assert_finished_output(out, new)
