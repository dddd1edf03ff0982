"""Issue 10, point 1: the trainer refuses a damaged data folder in one line, before its first step.

Each test damages a copy of a real pipeline output (``records_dir``: sequence length 8, two train
shards, one validation shard) the way the issue's reproductions do, and runs the training job on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import synthetic
import tensorflow as tf
from helpers import TINY

from preprocessing import reader, records
from trainer import data as data_lib
from trainer import task

PREFIX = "lstm-composer train: error: "


@pytest.fixture()
def data_dir(records_dir, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(records_dir, out)
    return out


def shard(data_dir, split: str, index: int = 0):
    return data_dir / reader.read_manifest(str(data_dir)).shards(split)[index]


def keep_first_records(path, count: int) -> None:
    """Rewrite a shard to hold only its first ``count`` records: cut at a record boundary, so every
    checksum TFRecord carries still passes."""
    kept = [r.numpy() for r in tf.data.TFRecordDataset(str(path)).take(count)]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in kept:
            writer.write(record)


def train(data_dir, job, capsys, *flags) -> str:
    """Run the training job; assert it refused with exit 2 and exactly one line, before any step."""
    code = task.main(
        [
            "--data-dir",
            str(data_dir),
            "--job-dir",
            str(job),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            *TINY,
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    ours = [line for line in err.splitlines() if "error:" in line]
    assert len(ours) == 1 and ours[0].startswith(PREFIX), err
    # no checkpoint, no backup, no log: nothing ran
    assert not [p for p in job.rglob("*") if p.is_file()]
    return ours[0][len(PREFIX) :]


@pytest.mark.slow
def test_a_shard_cut_to_its_first_10_records_stops_the_training_job(data_dir, tmp_path):
    """The issue's reproduction, as a command: it used to train on 10 windows with exit 0."""
    path = shard(data_dir, "train")
    before = path.stat().st_size
    keep_first_records(path, 10)
    # TFRecord itself sees nothing wrong
    assert sum(1 for _ in tf.data.TFRecordDataset(str(path))) == 10
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    job = tmp_path / "job"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.task",
            "--data-dir",
            str(data_dir),
            "--job-dir",
            str(job),
            "--epochs",
            "1",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line or "Traceback" in line]
    assert lines == [
        f"{PREFIX}shard {path} holds {path.stat().st_size:,} bytes, manifest.json lists {before:,} "
        f"(truncated or cut since the pipeline wrote it); {records.RERUN}"
    ]
    assert not [p for p in job.rglob("*") if p.is_file()]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_a_shard_truncated_mid_record_is_refused_before_training(data_dir, tmp_path, capsys, split):
    path = shard(data_dir, split)
    data = path.read_bytes()
    # tf.data: DataLossError, a traceback at the end of epoch 1 for validation
    path.write_bytes(data[:-5])
    message = train(data_dir, tmp_path / "job", capsys)
    assert message.startswith(f"shard {path} holds") and "truncated or cut" in message


def test_a_missing_shard_is_refused(data_dir, tmp_path, capsys):
    path = shard(data_dir, "train", 1)
    path.unlink()
    assert (
        train(data_dir, tmp_path / "job", capsys)
        == f"shard {path} listed in manifest.json is missing; {records.RERUN}"
    )


def test_another_runs_shard_of_another_size_is_refused(data_dir, tmp_path, capsys):
    other = tmp_path / "other"
    synthetic.write_dataset(
        str(other), sequence_length=8, train_pieces=2, validation_pieces=1, piece_length=40
    )
    path = shard(data_dir, "train")
    shutil.copyfile(shard(other, "train"), path)
    assert "since the pipeline wrote it" in train(data_dir, tmp_path / "job", capsys)


@pytest.mark.parametrize("verify", ["quick", "full"])
def test_another_runs_shard_of_the_same_size_is_refused(tmp_path, capsys, verify):
    """Ids below 128 make every record the same size: the same record count is the same byte
    size."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    synthetic.write_dataset(str(ours), seed=1)
    synthetic.write_dataset(str(theirs), seed=2)
    path, other = shard(ours, "train"), shard(theirs, "train")
    assert path.stat().st_size == other.stat().st_size and path.read_bytes() != other.read_bytes()
    shutil.copyfile(other, path)
    message = train(ours, tmp_path / "job", capsys, "--verify-shards", verify)
    assert (
        message.startswith(f"shard {path} has the size manifest.json lists")
        and "other content" in message
    )


def test_a_cut_gzip_shard_is_refused(tmp_path, capsys):
    out = tmp_path / "gz"
    synthetic.write_dataset(
        str(out), compression="gzip", train_pieces=2, validation_pieces=1, piece_length=20
    )
    path = shard(out, "train")
    path.write_bytes(path.read_bytes()[:-8])  # the gzip trailer
    assert "truncated or cut" in train(out, tmp_path / "job", capsys)


def test_a_shard_damaged_after_the_check_is_one_line_too(data_dir):
    data = data_lib.load(str(data_dir))
    path = shard(data_dir, "validation")
    content = path.read_bytes()
    # inside the last record, after load(): only tf.data's own checks remain
    path.write_bytes(content[:-5])
    with pytest.raises(
        data_lib.DataError,
        match=f"a validation shard in {data_dir} is damaged: .*; {records.RERUN}$",
    ):
        data_lib.numpy_windows(data, "validation")


def test_an_intact_output_is_accepted_by_both_checks(data_dir):
    for full in (False, True):
        data = data_lib.load(str(data_dir), full=full)
        assert data.manifest.records("train") == sum(s.records for s in data.manifest.train_shards)
        assert data.windows("train") > data.manifest.records("train") > 0


def test_the_flag_is_checked(capsys):
    assert task.main(["--data-dir", "x", "--verify-shards", "some"]) == 2
    assert "argument --verify-shards: invalid choice: 'some'" in capsys.readouterr().err
