"""A job started again into its --job-dir resumes only the run its backup belongs to
(trainer.resume).

Each reproduction starts from one tiny job whose backup holds one finished epoch, as a job killed
after its first backup leaves it (tests/test_trainer_distributed.py kills one for real), and starts
it again with other data or flags: a different run is refused with one line that names each
difference and changes no byte of the job directory; a changeable flag takes effect and is logged.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import synthetic
from helpers import TINY, scalars

from preprocessing import reader, records
from trainer import flags, resume, task

ERROR = "lstm-composer train: error:"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: equal snapshots mean nothing was written or
    lost."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def one_error_line(code: int, err: str) -> str:
    """The job's single error line (exit status 2, no traceback); returns it."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Data at sequence length 8 and a job dir whose backup holds epoch 1 of a run at learning
    rate 0.02."""
    root = tmp_path_factory.mktemp("first_run")
    data = root / "data8"
    synthetic.write_dataset(str(data), train_pieces=4, validation_pieces=2, piece_length=30)
    job = root / "job"
    assert (
        task.main(
            [
                "--data-dir",
                str(data),
                "--job-dir",
                str(job),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--learning-rate",
                "0.02",
                *TINY,
            ]
        )
        == 0
    )
    return {"root": root, "data": data, "job": job}


@pytest.fixture()
def job(first_run, tmp_path) -> Path:
    """A copy of the first run's job dir, for one test to resume or refuse."""
    return Path(shutil.copytree(first_run["job"], tmp_path / "job"))


def argv(data: Path, job: Path, *extra: str) -> list[str]:
    return [
        "--data-dir",
        str(data),
        "--job-dir",
        str(job),
        "--batch-size",
        "16",
        "--learning-rate",
        "0.02",
        *TINY,
        *extra,
    ]


def refused(argv_: list[str], job: Path, capsys) -> str:
    """Run a restart that must be refused; check it took no step and left every file; its error
    line."""
    before = snapshot(job)
    code = task.main(argv_)
    out, err = capsys.readouterr()
    line = one_error_line(code, err)
    assert "epoch 2/" not in out and "resuming" not in out, out
    assert snapshot(job) == before
    assert f"{job / 'backup'} holds the backup of a different run (" in line
    assert line.endswith(
        "use another --job-dir, or add --replace-run to set that run aside and start this one at epoch 1"
    )
    return line


@pytest.mark.slow
def test_data_of_another_sequence_length_is_refused_by_name(first_run, job, tmp_path, capsys):
    data6 = tmp_path / "data6"
    synthetic.write_dataset(
        str(data6), train_pieces=4, validation_pieces=2, piece_length=30, sequence_length=6
    )
    line = refused(argv(data6, job, "--epochs", "3"), job, capsys)
    assert "(sequence_length 8 → 6)" in line, line
    assert json.loads((job / "model" / "manifest.json").read_text())["sequence_length"] == 8


@pytest.mark.slow
def test_a_vocabulary_in_another_order_is_refused_by_name(first_run, job, tmp_path, capsys):
    """Same size, same records: every id would silently mean another token."""
    data = Path(shutil.copytree(first_run["data"], tmp_path / "reordered"))
    vocab = reader.read_vocab(str(data))[::-1]
    (data / "vocab.json").write_text(records.vocab_to_json(vocab))
    manifest = json.loads((data / "manifest.json").read_text())
    old_hash, manifest["vocab_hash"] = manifest["vocab_hash"], records.vocab_hash(vocab)
    (data / "manifest.json").write_text(json.dumps(manifest))
    line = refused(argv(data, job, "--epochs", "3"), job, capsys)
    assert f"(vocab_hash {old_hash} → {manifest['vocab_hash']})" in line, line


@pytest.mark.slow
def test_other_model_flags_are_refused_by_name_without_a_variable_dump(first_run, job, capsys):
    wider = [*argv(first_run["data"], job, "--epochs", "3"), "--units", "32", "--dropout", "0.2"]
    line = refused(wider, job, capsys)
    assert "(--units 16 → 32; --dropout 0.1 → 0.2)" in line, line
    assert len(line) < 400 and "Tensor" not in line and "value" not in line, line


@pytest.mark.slow
def test_a_new_learning_rate_takes_effect_and_is_logged(first_run, job, capsys):
    import tensorflow as tf

    assert (
        task.main([*argv(first_run["data"], job, "--epochs", "2"), "--learning-rate", "0.05"]) == 0
    )
    out = capsys.readouterr().out
    assert "epoch 1 finished, continuing with epoch 2" in out
    for change in (
        "--learning-rate 0.02 → 0.05 (changed on resume)",
        "--epochs 1 → 2 (changed on resume)",
    ):
        assert out.count(change) == 1, out
    assert "--units" not in out and "--batch-size" not in out  # unchanged flags are not reported
    assert "learning_rate=0.05 " in next(
        line for line in out.splitlines() if "epoch 2/2 finished" in line
    )
    assert scalars(str(job / "logs"))["epoch/learning_rate"] == [
        (1, pytest.approx(0.02)),
        (2, pytest.approx(0.05)),
    ]
    # the optimizer's own variable
    reader = tf.train.load_checkpoint(str(job / "backup" / "ckpt-2"))
    assert reader.get_tensor(
        "optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"
    ) == pytest.approx(0.05)
    assert resume.from_json((job / "backup" / "run.json").read_text())["learning_rate"] == 0.05


@pytest.mark.slow
def test_replace_run_sets_the_other_run_aside_and_starts_at_epoch_one(
    first_run, job, tmp_path, capsys
):
    data6 = tmp_path / "data6"
    synthetic.write_dataset(
        str(data6), train_pieces=4, validation_pieces=2, piece_length=30, sequence_length=6
    )
    before = snapshot(job)
    assert task.main(argv(data6, job, "--epochs", "1", "--replace-run")) == 0
    out = capsys.readouterr().out
    assert (
        "--replace-run: the backup" in out
        and "is of a different run (sequence_length 8 → 6)" in out
    ), out
    assert "resuming" not in out and "epoch 1/1 finished" in out
    assert resume.from_json((job / "backup" / "run.json").read_text())["sequence_length"] == 6
    assert sorted(p.name for p in (job / "backup").glob("ckpt-*.index")) == ["ckpt-1.index"]
    assert (job / "model" / "manifest.json").read_text() == (data6 / "manifest.json").read_text()
    # Nothing of the first run is lost: each of its files sits in previous-run-TIME/ of its folder.
    (aside,) = {p.name for p in (job / "backup").iterdir() if p.name.startswith("previous-run-")}
    for path, content in before.items():
        folder, name = path.split("/", 1)
        assert (job / folder / aside / name).read_bytes() == content, path
    # Started again with the same command (as a platform restarts a job), it resumes its own run.
    assert task.main(argv(data6, job, "--epochs", "2", "--replace-run")) == 0
    out = capsys.readouterr().out
    assert "is of this same run; resuming it" in out and "continuing with epoch 2" in out, out
    assert sorted(
        p.name for p in (job / "backup").iterdir() if p.name.startswith("previous-run-")
    ) == [aside]


@pytest.mark.slow
def test_a_backup_without_run_json_resumes_with_a_warning(first_run, job, capsys):
    """A backup made by the previous version: shapes are still checked, and the line stays short."""
    (job / "backup" / "run.json").unlink()
    code = task.main([*argv(first_run["data"], job, "--epochs", "2"), "--units", "32"])
    line = one_error_line(code, capsys.readouterr().err)
    assert "does not fit this model" in line and len(line) < 500, line
    assert task.main(argv(first_run["data"], job, "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert (
        "warning: the backup" in out and "has no run.json" in out and "epoch 2/2 finished" in out
    ), out
    assert resume.from_json((job / "backup" / "run.json").read_text())["units"] == 16


@pytest.mark.slow
def test_an_unreadable_run_json_is_one_message(first_run, job, capsys):
    (job / "backup" / "run.json").write_text("{ half a file")
    before = snapshot(job)
    line = one_error_line(
        task.main(argv(first_run["data"], job, "--epochs", "2")), capsys.readouterr().err
    )
    assert f"cannot read {job / 'backup' / 'run.json'}" in line and "--replace-run" in line, line
    assert snapshot(job) == before


# --------------------------------------------------------------------------- the pure functions

RUN = {
    "encoding": "e1",
    "sequence_length": 16,
    "vocab_size": 20,
    "vocab_hash": "ab12",
    "stride": 1,
    "layout": "spans",
    "transpose": 0,
    "parts": "first",
    "train_windows": 100,
    "validation_windows": 10,
    "model": "fast",
    "objective": "last",
    "units": 16,
    "layers": 2,
    "dense_units": 16,
    "embedding_dim": 8,
    "dropout": 0.1,
    "learning_rate": 0.001,
    "epochs": 3,
    "batch_size": 16,
    "seed": 3,
    "shuffle_buffer": 100,
    "steps_per_epoch": None,
    "validation_steps": None,
    "baseline_windows": 10,
    "sample_every": 5,
    "data_dir": "d",
}


def test_differences_and_the_refusal_on_hand_made_dicts():
    other = {
        **RUN,
        "sequence_length": 8,
        "vocab_hash": "cd34",
        "units": 32,
        "learning_rate": 0.05,
        "epochs": 9,
    }
    assert resume.differences(RUN, other, resume.MUST_MATCH) == [
        ("sequence_length", 16, 8),
        ("vocab_hash", "ab12", "cd34"),
        ("units", 16, 32),
    ]
    assert resume.differences(RUN, other, resume.MAY_CHANGE) == [
        ("learning_rate", 0.001, 0.05),
        ("epochs", 3, 9),
    ]
    assert resume.differences(RUN, dict(RUN), resume.MUST_MATCH + resume.MAY_CHANGE) == []
    assert resume.differences({}, {"units": 16}, ["units", "layers"]) == [("units", None, 16)]

    refuse = resume.plan(RUN, other, has_backup=True, replace=False)
    assert refuse.action == "refuse" and refuse.changes == ()
    assert resume.refusal("JOB/backup", refuse.conflicts) == (
        "JOB/backup holds the backup of a different run (sequence_length 16 → 8; vocab_hash ab12 → cd34; "
        "--units 16 → 32): use another --job-dir, or add --replace-run to set that run aside and start this "
        "one at epoch 1"
    )
    assert resume.plan(RUN, other, has_backup=True, replace=True).action == "replace"

    changed = {**RUN, "learning_rate": 0.05, "steps_per_epoch": 10}
    # --replace-run resumes its own run
    same = resume.plan(RUN, changed, has_backup=True, replace=True)
    assert same.action == "resume" and same.conflicts == ()
    assert resume.change_lines(same.changes) == [
        "--learning-rate 0.001 → 0.05 (changed on resume)",
        "--steps-per-epoch none → 10 (changed on resume)",
    ]
    assert resume.plan(None, RUN, has_backup=False, replace=False) == resume.Plan("fresh")
    # run.json, no ckpt
    assert resume.plan(RUN, other, has_backup=False, replace=False) == resume.Plan("fresh")
    assert resume.plan(None, RUN, has_backup=True, replace=False) == resume.Plan(
        "resume", recorded=False
    )
    assert resume.plan(None, RUN, has_backup=True, replace=True) == resume.Plan(
        "replace", recorded=False
    )
    assert resume.from_json(resume.to_json(RUN)) == RUN
    # a run.json from before the objective and the layout were recorded: the notebook's, windows
    before = {k: v for k, v in RUN.items() if k not in ("objective", "layout")}
    assert resume.from_json(resume.to_json(before)) == {**RUN, "layout": "windows"}
    with pytest.raises(ValueError):
        resume.from_json(json.dumps({"version": 99, "run": RUN}))


def test_every_training_flag_is_classified_and_the_fingerprint_reads_the_manifest():
    dests = {
        a.dest for a in flags.build_parser()._actions if a.dest not in ("help", argparse.SUPPRESS)
    }  # noqa: SLF001
    classified = set(resume.FLAGS) | set(resume.NOT_RECORDED)
    assert dests == classified, dests ^ classified
    assert not set(resume.MUST_MATCH) & set(resume.MAY_CHANGE)
    manifest = records.Manifest(
        sequence_length=16,
        stride=2,
        vocab_size=20,
        vocab_hash="ab12",
        parts="all",
        compression="none",
        validation_fraction=0.1,
        counts={"train_windows": 100, "validation_windows": 10},
        train_shards=("t",),
        validation_shards=("v",),
    )
    args = vars(
        flags.parse_args(["--data-dir", "d", "--model", "reference", "--embedding-dim", "8"])
    )
    run = resume.fingerprint(manifest, args)
    assert set(run) == set(resume.MUST_MATCH + resume.MAY_CHANGE)
    assert (run["sequence_length"], run["vocab_hash"], run["stride"], run["train_windows"]) == (
        16,
        "ab12",
        2,
        100,
    )
    assert run["embedding_dim"] is None  # the reference network has no embedding
    assert resume.fingerprint(manifest, {**args, "model": "fast"})["embedding_dim"] == 8
