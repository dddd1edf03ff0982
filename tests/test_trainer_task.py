"""trainer.task in-process: training on a real pipeline output, the job directory, TensorBoard,
errors."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
import synthetic
from helpers import TINY, free_port, scalars, tiny_training

from trainer import distribute, job_dir, steps, task
from trainer.export import PRIMER_WINDOWS
from trainer.flags import UsageError

EPOCH_SCALARS = [
    "epoch/loss",
    "epoch/val_loss",
    "epoch/val_accuracy",
    "epoch/val_top5_accuracy",
    "epoch/perplexity",
    "epoch/val_bits_per_beat",
    "epoch/val_bits_per_note",
    "epoch/learning_rate",
    "epoch/examples_per_second",
]


@pytest.fixture(scope="module")
def trained_job(records_dir, tmp_path_factory):
    """One tiny training run (4 epochs, default strategy selection) on the pipeline's output."""
    job = tmp_path_factory.mktemp("job")
    assert task.main(tiny_training(records_dir, job, epochs=4)) == 0
    return {"job": job, "data": records_dir, "scalars": scalars(str(job / "logs"))}


@pytest.mark.slow
def test_loss_falls_on_pipeline_output(trained_job):
    losses = [v for _, v in trained_job["scalars"]["epoch/loss"]]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    values = trained_job["scalars"]
    val_losses = [v for _, v in values["epoch/val_loss"]]
    assert val_losses[-1] < val_losses[0], val_losses
    # It learned more than note frequencies: better than always guessing the most frequent token.
    assert values["epoch/val_accuracy"][-1][1] > values["baseline/unigram_val_accuracy"][0][1]


@pytest.mark.slow
def test_job_dir_layout(trained_job):
    import keras

    job, data = trained_job["job"], trained_job["data"]
    assert sorted(p.name for p in job.iterdir()) == ["backup", "checkpoints", "logs", "model"]
    assert (job / "model" / "vocab.json").read_text() == (data / "vocab.json").read_text()
    assert (job / "model" / "manifest.json").read_text() == (data / "manifest.json").read_text()
    best = sorted(p.name for p in (job / "checkpoints").glob("weights-improvement-*.keras"))
    assert best and best[0].startswith("weights-improvement-01-")
    assert list((job / "checkpoints").glob("val-improvement-*.keras"))
    assert (job / "backup" / "checkpoint").exists()
    model = keras.saving.load_model(job / "model" / "model.keras")
    manifest = json.loads((data / "manifest.json").read_text())
    windows = np.zeros((3, manifest["sequence_length"]), np.int64)
    probs = np.asarray(model.predict(windows, verbose=0))
    assert probs.shape == (3, manifest["vocab_size"])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_training_logs_listenable_samples(trained_job):
    """--sample-every 2: a piano roll, audio and the tokens in TensorBoard at epochs 2 and 4."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(
        str(trained_job["job"] / "logs"), size_guidance={"tensors": 0}
    )
    acc.Reload()
    for tag in ("sample/piano_roll", "sample/audio", "sample/tokens"):
        assert [e.step for e in acc.Tensors(tag)] == [2, 4], tag
    audio = tf.make_ndarray(acc.Tensors("sample/audio")[-1].tensor_proto).reshape(-1)[0]
    wave, rate = tf.audio.decode_wav(audio)
    assert int(rate) == 16_000 and float(tf.math.reduce_std(wave)) > 0.01
    image = tf.make_ndarray(acc.Tensors("sample/piano_roll")[-1].tensor_proto)
    width, height = int(image[0]), int(image[1])
    assert tf.io.decode_png(image[2]).shape == (height, width, 3)


@pytest.mark.slow
def test_exported_model_composes(trained_job, tmp_path):
    """The model/ folder is everything generation needs: primers.json included."""
    from preprocessing.encodings import reference
    from trainer import generate

    model_dir = trained_job["job"] / "model"
    primers = json.loads((model_dir / "primers.json").read_text())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert primers["split"] == "validation" and len(primers["windows"]) == PRIMER_WINDOWS
    assert all(len(w) == manifest["sequence_length"] for w in primers["windows"])
    out = tmp_path / "piece.mid"
    assert (
        generate.main(
            ["--model-dir", str(model_dir), "--output", str(out), "--length", "30", "--seed", "2"]
        )
        == 0
    )
    tokens = json.loads((tmp_path / "piece.json").read_text())["tokens_text"]
    assert reference.tokens_from_midi_bytes(out.read_bytes()) == tokens


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_epoch_scalars(trained_job):
    values = trained_job["scalars"]
    for tag in EPOCH_SCALARS:
        assert [step for step, _ in values[tag]] == [1, 2, 3, 4], tag
    for (_, loss), (_, ppl) in zip(values["epoch/val_loss"], values["epoch/perplexity"]):
        assert ppl == pytest.approx(math.exp(loss), rel=1e-5)
    assert all(0 <= v <= 1 for _, v in values["epoch/val_accuracy"])
    assert all(
        a <= b
        for (_, a), (_, b) in zip(values["epoch/val_accuracy"], values["epoch/val_top5_accuracy"])
    )
    # the reference encoding writes two tokens per quarter note; a chord token plays one note per
    # pitch class, a one-class chord (``0``) two (octaves 4 and 5), a note token one
    from trainer import data as data_lib

    data = data_lib.load(str(trained_job["data"]))
    pieces = [[data.vocab[i] for i in p] for p in data_lib.pieces(data, "validation")]
    notes = sum(
        2 if token.isdigit() else len(token.split(".")) for piece in pieces for token in piece
    )
    tokens_per_note = sum(map(len, pieces)) / notes
    for (_, loss), (_, per_beat), (_, per_note) in zip(
        values["epoch/val_loss"],
        values["epoch/val_bits_per_beat"],
        values["epoch/val_bits_per_note"],
    ):
        assert per_beat == pytest.approx(loss / math.log(2) * 2, rel=1e-5)
        assert per_note == pytest.approx(loss / math.log(2) * tokens_per_note, rel=1e-5)
    assert [v for _, v in values["epoch/learning_rate"]] == pytest.approx([0.02] * 4)
    assert all(v > 0 for _, v in values["epoch/examples_per_second"])
    for tag in ("baseline/unigram_val_accuracy", "baseline/bigram_val_accuracy"):
        assert len(values[tag]) == 1 and 0 <= values[tag][0][1] <= 1


@pytest.mark.slow
def test_tensorboard_server_serves_a_scalar(trained_job):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(trained_job["job"] / "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = urllib.parse.urlencode({"run": ".", "tag": "epoch/loss"})
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
    try:
        deadline, body, last_error = time.monotonic() + 90, None, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                if body:
                    break
            except (OSError, ValueError) as exc:  # not listening yet / run not loaded yet
                last_error = exc
            time.sleep(0.25)  # polling interval, not a timing assumption
        assert body, f"no scalar from {url}: {last_error}"
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = trained_job["scalars"]["epoch/loss"]
    assert [(step, pytest.approx(value, rel=1e-6)) for _, step, value in body] == expected


@pytest.mark.slow
def test_ram_job_dir_and_resume(tmp_path, capsys):
    """ram:// takes Keras' and tf.io.gfile's remote-path code, as gs:// does: write, resume,
    refuse."""
    import keras
    import tensorflow as tf

    data = tmp_path / "data"
    synthetic.write_dataset(str(data), train_pieces=4, validation_pieces=2, piece_length=30)
    job = f"ram://job-{uuid.uuid4().hex}"
    argv = ["--data-dir", str(data), "--job-dir", job, "--batch-size", "16", *TINY]
    assert task.main(argv + ["--epochs", "2"]) == 0
    for path in (
        "model/model.keras",
        "model/vocab.json",
        "model/manifest.json",
        "backup/checkpoint",
    ):
        assert tf.io.gfile.exists(f"{job}/{path}"), path
    assert tf.io.gfile.glob(f"{job}/checkpoints/weights-improvement-01-*.keras")
    assert tf.io.gfile.glob(f"{job}/logs/events.out.tfevents.*")
    local = tmp_path / "model.keras"
    tf.io.gfile.copy(f"{job}/model/model.keras", str(local))
    assert keras.saving.load_model(local).output_shape == (None, 20)
    capsys.readouterr()

    assert task.main(argv + ["--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "epoch 2 finished, continuing with epoch 3" in out
        and "--epochs 2 → 3 (changed on resume)" in out
    )
    assert "epoch 1/3" not in out and "epoch 3/3 finished" in out
    assert tf.io.gfile.exists(f"{job}/backup/run.json")

    # The same job dir with another model width: the backup's run.json names the difference.
    other_width = [a if a != "8" else "4" for a in TINY]  # --embedding-dim 4 instead of 8
    assert other_width != TINY
    code = task.main(
        [
            "--data-dir",
            str(data),
            "--job-dir",
            job,
            "--batch-size",
            "16",
            "--epochs",
            "4",
            *other_width,
        ]
    )
    assert_one_message(
        code,
        capsys.readouterr().err,
        f"{job}/backup holds the backup of a different run (--embedding-dim 8 → 4)",
    )


@pytest.mark.slow
def test_vertex_ai_environment_chooses_the_folders(tmp_path, monkeypatch):
    data = tmp_path / "data"
    synthetic.write_dataset(str(data), train_pieces=3, validation_pieces=1, piece_length=24)
    for name in ("MODEL", "CHECKPOINT", "TENSORBOARD_LOG"):
        monkeypatch.setenv(f"AIP_{name}_DIR", str(tmp_path / f"aip_{name.lower()}"))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CLUSTER_SPEC", raising=False)
    # --distribute none: the default strategy goes through the same loop.
    assert (
        task.main(
            [
                "--data-dir",
                str(data),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--distribute",
                "none",
                *TINY,
            ]
        )
        == 0
    )
    assert (tmp_path / "aip_model" / "model.keras").exists()
    assert (tmp_path / "aip_model" / "vocab.json").exists()
    assert list((tmp_path / "aip_checkpoint").glob("weights-improvement-01-*.keras"))
    assert (tmp_path / "aip_checkpoint" / "backup" / "checkpoint").exists()
    assert glob.glob(str(tmp_path / "aip_tensorboard_log" / "events.out.tfevents.*"))


# --------------------------------------------------------------------------- pure helpers


def test_layout_from_job_dir_and_vertex_variables():
    plain = job_dir.resolve_layout("gs://b/job/", {})
    assert plain == job_dir.Layout(
        "gs://b/job/checkpoints", "gs://b/job/backup", "gs://b/job/logs", "gs://b/job/model"
    )
    env = {
        "AIP_MODEL_DIR": "gs://b/out/model/",
        "AIP_CHECKPOINT_DIR": "gs://b/out/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": "gs://b/out/logs/",
    }
    vertex = job_dir.resolve_layout(None, env)
    assert vertex == job_dir.Layout(
        "gs://b/out/checkpoints",
        "gs://b/out/checkpoints/backup",
        "gs://b/out/logs",
        "gs://b/out/model",
    )
    assert job_dir.resolve_layout("/job", env).backup == "/job/backup"
    with pytest.raises(UsageError, match="--job-dir is required"):
        job_dir.resolve_layout(None, {"AIP_MODEL_DIR": "gs://b/m"})


def test_cluster_from_tf_config_and_cluster_spec():
    two = {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1},
    }
    config = distribute.cluster_config({"TF_CONFIG": json.dumps(two)})
    assert distribute.worker_count(config) == 2 and not distribute.is_chief(config)
    assert distribute.is_chief({**two, "task": {"type": "worker", "index": 0}})
    spec = {
        "cluster": {"workerpool0": ["a:1"], "workerpool1": ["b:1", "c:1"]},
        "task": {"type": "workerpool1", "index": 0},
    }
    from_spec = distribute.cluster_config({"CLUSTER_SPEC": json.dumps(spec)})
    assert from_spec == {
        "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
        "task": {"type": "worker", "index": 0},
    }
    assert distribute.worker_count(from_spec) == 3 and not distribute.is_chief(from_spec)
    assert distribute.is_chief({**from_spec, "task": {"type": "chief", "index": 0}})
    assert distribute.cluster_config({}) is None and distribute.is_chief(None)


# --------------------------------------------------------------------------- clear errors


def run_main(argv, capsys) -> tuple[int, str]:
    code = task.main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_message(code: int, err: str, fragment: str) -> None:
    assert code == 2
    assert fragment in err, err
    assert "Traceback" not in err
    ours = [
        line
        for line in err.splitlines()
        if line.startswith(("lstm-composer train: error:", "usage:"))
    ]
    assert len([line for line in ours if "error:" in line]) == 1, err


@pytest.fixture()
def tiny_data(tmp_path):
    out = tmp_path / "data"
    synthetic.write_dataset(str(out), train_pieces=2, validation_pieces=1, piece_length=20)
    return out


def test_vocab_mismatch_is_one_message(tiny_data, tmp_path, capsys):
    (tiny_data / "vocab.json").write_text(json.dumps(["A4", "B4"]))
    code, err = run_main(
        ["--data-dir", str(tiny_data), "--job-dir", str(tmp_path / "job"), "--epochs", "1"], capsys
    )
    assert_one_message(code, err, "does not match the records")


def test_ids_outside_the_vocabulary_are_one_message(tiny_data, tmp_path, capsys):
    # consistent manifest and vocab.json, but the records hold ids up to 19
    vocab = ["A4", "B4", "C5"]
    (tiny_data / "vocab.json").write_text(json.dumps(vocab))
    doc = json.loads((tiny_data / "manifest.json").read_text())
    from preprocessing import records

    doc.update(vocab_size=3, vocab_hash=records.vocab_hash(vocab))
    (tiny_data / "manifest.json").write_text(json.dumps(doc))
    code, err = run_main(
        ["--data-dir", str(tiny_data), "--job-dir", str(tmp_path / "job"), "--epochs", "1"], capsys
    )
    assert_one_message(code, err, "outside the vocabulary of 3 tokens in vocab.json")


def test_missing_data_dir_is_one_message(tmp_path, capsys):
    code, err = run_main(
        ["--data-dir", str(tmp_path / "nothing"), "--job-dir", str(tmp_path / "job")], capsys
    )
    assert_one_message(code, err, "is not a finished preprocessing output")


def test_empty_dataset_is_one_message(tmp_path, capsys):
    data = tmp_path / "data"
    synthetic.write_dataset(str(data), train_pieces=0, validation_pieces=1, piece_length=20)
    code, err = run_main(["--data-dir", str(data), "--job-dir", str(tmp_path / "job")], capsys)
    assert_one_message(code, err, "holds no training windows")


def test_shards_without_records_are_one_message(tiny_data, tmp_path, capsys):
    for shard in tiny_data.glob("train-*.tfrecord"):
        shard.write_bytes(b"")
    code, err = run_main(
        ["--data-dir", str(tiny_data), "--job-dir", str(tmp_path / "job"), "--epochs", "1", *TINY],
        capsys,
    )
    assert_one_message(code, err, "holds 0 bytes, manifest.json lists")


def test_unwritable_job_dir_is_one_message(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = run_main(["--data-dir", str(tiny_data), "--job-dir", str(blocker / "job")], capsys)
    assert_one_message(code, err, f"cannot write to the job directory {blocker / 'job'}")


def test_wrong_flag_is_one_message(tiny_data, capsys):
    code, err = run_main(["--data-dir", str(tiny_data), "--epochz", "3"], capsys)
    assert_one_message(code, err, "unrecognized arguments: --epochz 3")
    code, err = run_main(["--data-dir", str(tiny_data), "--batch-size", "0"], capsys)
    assert_one_message(code, err, "argument --batch-size: must be a positive integer, not 0")


def test_console_script_and_module_share_the_parser():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    via_script = subprocess.run(
        ["lstm-composer", "train", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    via_module = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
    for flag in (
        "--data-dir",
        "--job-dir",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--model",
        "--units",
        "--layers",
        "--embedding-dim",
        "--dropout",
        "--seed",
        "--steps-per-epoch",
        "--distribute",
        "--shuffle-buffer",
    ):
        assert flag in via_module.stdout


# --------------------------------------------------------------------------- the step functions


def test_mixed_precision_step_learns_on_cpu(tmp_path):
    """The GPU path's loss scaling (mixed_float16 + LossScaleOptimizer) through the trainer's own
    step."""
    import tensorflow as tf

    from trainer import data as data_lib
    from trainer import model as model_lib

    synthetic.write_dataset(
        str(tmp_path / "d"), train_pieces=4, validation_pieces=1, piece_length=40
    )
    data = data_lib.load(str(tmp_path / "d"))
    strategy = tf.distribute.get_strategy()
    model = model_lib.fast(
        8,
        20,
        units=16,
        num_layers=2,
        embedding_dim=8,
        dropout=0.0,
        learning_rate=0.02,
        mixed_precision=True,
    )
    model.optimizer.build(model.trainable_variables)
    train_steps = steps.train_steps_function(strategy, model, 16)
    eval_steps = steps.eval_steps_function(strategy, model)
    iterator = iter(
        strategy.experimental_distribute_dataset(data_lib.dataset(data, "train", 16, seed=0))
    )
    first = float(train_steps(iterator, tf.constant(5))[0]) / 5
    for _ in range(4):
        last = float(train_steps(iterator, tf.constant(20))[0]) / 20
    assert math.isfinite(first) and math.isfinite(last) and last < 0.8 * first, (first, last)
    assert data.windows("validation") == 32
    val = iter(
        strategy.experimental_distribute_dataset(
            data_lib.dataset(data, "validation", 16, weighted=True)
        )
    )
    # 5 steps: 80 rows, 32 weighted
    loss_sum, hits, top5, count = eval_steps(val, tf.constant(5)).numpy()
    assert count == 32 and 0 <= hits <= top5 <= count and loss_sum > 0


# ------------------------------------------------------- a refused job leaves the job dir as it was


@pytest.mark.parametrize(
    "case", ["no data", "no training windows", "vocabulary mismatch", "under a file", "bad flag"]
)
@pytest.mark.parametrize("job_exists", [False, True], ids=["new job dir", "empty job dir"])
def test_refused_train_leaves_no_folders(case, job_exists, tiny_data, tmp_path, capsys):
    job = tmp_path / "job"
    if job_exists:
        job.mkdir()
    data = tiny_data
    if case == "no data":
        data = tmp_path / "nothing"
    elif case == "no training windows":
        data = tmp_path / "empty-data"
        synthetic.write_dataset(str(data), train_pieces=0, validation_pieces=1, piece_length=20)
    elif case == "vocabulary mismatch":
        (tiny_data / "vocab.json").write_text(json.dumps(["A4", "B4"]))
    argv = ["--data-dir", str(data), "--job-dir", str(job), "--epochs", "1", *TINY]
    if case == "under a file":
        (tmp_path / "a-file").write_text("not a folder")
        job = tmp_path / "a-file" / "job"
        argv[3] = str(job)
    if case == "bad flag":
        argv += ["--batch-size", "0"]
    code, err = run_main(argv, capsys)
    assert code == 2 and "Traceback" not in err, err
    if job_exists and case != "under a file":
        assert list(job.iterdir()) == []
    else:
        assert not job.exists()
    if case == "under a file":
        assert (tmp_path / "a-file").read_text() == "not a folder"


def test_check_writable_removes_the_folders_it_made(tmp_path):
    """A job dir spread over places (Vertex AI's AIP_* folders) that fails in the last one."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "kept").mkdir()
    paths = [
        tmp_path / "new" / "checkpoints",
        tmp_path / "kept" / "logs",
        tmp_path / "a-file" / "model",
    ]
    with pytest.raises(
        UsageError, match=f"cannot write to the job directory {tmp_path / 'a-file' / 'model'}"
    ):
        job_dir.check_writable([str(p) for p in paths])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "kept"]
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize(
    "model, what",
    [
        ("reference", "the training loss"),  # the loss of step 2 is nan: its step says so
        ("fast", "the weights"),  # the embedding's sparse update refuses them first
    ],
)
def test_a_diverged_training_stops_in_one_line_and_keeps_the_last_good_epoch(
    model, what, tiny_data, tmp_path, capsys
):
    """A learning rate that blows the weights up is named, with the step, not blamed on the data;
    the backup still holds the epoch before it, which a resume with a sane rate continues."""
    job = tmp_path / "job"
    argv = [
        *["--data-dir", str(tiny_data), "--job-dir", str(job), *TINY, "--sample-every", "0"],
        *["--batch-size", "4", "--model", model],  # several steps an epoch
    ]
    assert task.main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    code, err = run_main([*argv, "--epochs", "3", "--learning-rate", "1e30"], capsys)
    assert_one_message(
        code, err, f"training diverged: {what} became infinite or not a number at step"
    )
    assert "(epoch 2, step 2 of 6) at learning rate 1e+30" in err  # the step after the blow-up
    assert "the backup keeps epoch 1: start again with a lower --learning-rate" in err
    assert "do not match" not in err
    assert task.main([*argv, "--epochs", "2"]) == 0  # resumes epoch 2 from the good backup
    assert "resuming from backup" in capsys.readouterr().out


def test_the_trainer_says_what_it_computes_on_whatever_the_verbosity(tiny_data, tmp_path, capsys):
    """Cloud Logging of a quiet image shows the devices: one line at start, from the trainer."""
    import tensorflow as tf

    argv = ["--data-dir", str(tiny_data), "--job-dir", str(tmp_path / "job"), *TINY]
    assert task.main([*argv, "--epochs", "1", "--sample-every", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = (
        f"trainer: devices: CPU only, no GPU visible (TensorFlow {tf.__version__}); precision"
    )
    assert lines[0] == f"{expected} float32" and lines[1].startswith("trainer: strategy ")
    assert distribute.device_line("reference").endswith("precision float32")
