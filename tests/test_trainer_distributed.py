"""trainer.task as real processes: MirroredStrategy on 2 logical CPUs, two MultiWorkerMirrored
workers on 127.0.0.1, and a job killed with SIGKILL that resumes from its last finished epoch."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY, scalars, tiny_training

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
for _name in (
    "TF_CONFIG",
    "CLUSTER_SPEC",
    "AIP_MODEL_DIR",
    "AIP_CHECKPOINT_DIR",
    "AIP_TENSORBOARD_LOG_DIR",
):
    ENV.pop(_name, None)

# TensorFlow fixes its logical devices when it initialises, so the split happens in a fresh process,
# before trainer.task runs; the job itself is unchanged (MirroredStrategy over the local CPU
# devices).
TWO_CPUS = (
    "import sys, tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "from trainer import task\n"
    "sys.exit(task.main(sys.argv[1:]))\n"
)

EPOCH_LINE = re.compile(r"trainer: epoch (\d+)/(\d+) finished: loss=([0-9.e+-]+)")


def epoch_losses(out: str) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(3)) for m in EPOCH_LINE.finditer(out)}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run(args, *, env=None, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(records_dir, tmp_path):
    job = tmp_path / "job"
    argv = [
        "--data-dir",
        str(records_dir),
        "--job-dir",
        str(job),
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--steps-per-epoch",
        "20",
        "--learning-rate",
        "0.02",
        "--distribute",
        "mirrored",
        "--model",
        "reference",
        *TINY,
    ]
    result = run([sys.executable, "-c", TWO_CPUS, *argv])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy MirroredStrategy with 2 replica(s) on 1 worker(s)" in result.stdout
    # recurrent dropout, BatchNorm statistics, under 2 replicas
    assert "model reference:" in result.stdout
    losses = epoch_losses(result.stdout)
    assert sorted(losses) == [1, 2, 3] and losses[3] < losses[2] < losses[1], result.stdout
    # The exported model has the same shapes as one trained without distribution.
    import keras
    import numpy as np

    model = keras.saving.load_model(job / "model" / "model.keras")
    v = json.loads((records_dir / "manifest.json").read_text())["vocab_size"]
    assert model.input_shape == (None, 8) and model.output_shape == (None, v)
    assert model.predict(np.zeros((5, 8), np.int64), verbose=0).shape == (5, v)

    # A global batch smaller than the replica count cannot be split: one clear message.
    small = run(
        [
            sys.executable,
            "-c",
            TWO_CPUS,
            *argv[: -len(TINY)],
            "--batch-size",
            "1",
            "--job-dir",
            str(tmp_path / "j2"),
        ]
    )
    assert small.returncode == 2
    assert (
        "lstm-composer train: error: --batch-size 1 is smaller than the 2 replicas in sync"
        in small.stderr
    )
    assert "Traceback" not in small.stderr
    assert not (tmp_path / "j2").exists()  # refused before any folder of the job directory was made


def two_workers(argv) -> tuple[list[subprocess.Popen], list[tuple[int, str, str]]]:
    """``argv`` as two MultiWorkerMirrored workers on 127.0.0.1; the processes and their (rc,
    out, err)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        env = {
            **ENV,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        procs.append(
            subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = []
    try:
        for proc in procs:  # a dead peer hangs the collectives: bounded wait, then kill both
            out, err = proc.communicate(timeout=300)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return procs, outputs


@pytest.mark.slow
def test_two_multiworker_processes_then_single_worker_resume(records_dir, tmp_path):
    job = tmp_path / "job"
    argv = [
        sys.executable,
        "-m",
        "trainer.task",
        *tiny_training(records_dir, job, epochs=2, sample_every=1),
    ]
    procs, outputs = two_workers(argv)
    (chief_rc, chief_out, chief_err), (worker_rc, worker_out, worker_err) = outputs
    assert chief_rc == 0, chief_err[-3000:]
    assert worker_rc == 0, worker_err[-3000:]
    assert (
        "strategy MultiWorkerMirroredStrategy with 2 replica(s) on 2 worker(s); this is worker-0 (chief)"
        in chief_out
    )
    assert "this is worker-1" in worker_out and "(chief)" not in worker_out
    assert sorted(epoch_losses(chief_out)) == [1, 2]
    # Only the chief writes: epoch lines, the model and the TensorBoard events (named after its
    # pid).
    assert not epoch_losses(worker_out) and "model written" not in worker_out
    assert "model written" in chief_out
    assert sorted(p.name for p in job.iterdir()) == ["backup", "checkpoints", "logs", "model"]
    events = list((job / "logs").glob("events.out.tfevents.*"))
    assert len(events) == 1 and f".{procs[0].pid}." in events[0].name
    assert sorted(p.name for p in (job / "model").iterdir()) == [
        "manifest.json",
        "model.keras",
        "primers.json",
        "vocab.json",
    ]
    # The chief's TensorBoard samples ran while the worker took part in reading the weights.
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(job / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("sample/piano_roll")] == [1, 2]
    backups = sorted(p.name for p in (job / "backup").iterdir())
    assert backups == [
        "checkpoint",
        "ckpt-1.data-00000-of-00001",
        "ckpt-1.index",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "run.json",
    ]
    assert len(list((job / "checkpoints").glob("weights-improvement-*.keras"))) >= 1

    # One worker (no TF_CONFIG) resumes from the two-worker checkpoint.
    resumed = run(
        argv[: argv.index("--epochs")] + ["--epochs", "3", *argv[argv.index("--epochs") + 2 :]]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "strategy MirroredStrategy with 1 replica(s)" in resumed.stdout
    assert "epoch 2 finished, continuing with epoch 3" in resumed.stdout
    assert sorted(epoch_losses(resumed.stdout)) == [3]

    # Two workers started again with another network: both read the chief's run.json and refuse
    # alike.
    backup = {p.name: p.read_bytes() for p in (job / "backup").iterdir()}
    _, refusals = two_workers(argv[: -len(TINY)] + [*TINY, "--units", "32"])
    lines = [
        [line for line in err.splitlines() if line.startswith("lstm-composer train: error:")]
        for _, _, err in refusals
    ]
    assert [rc for rc, _, _ in refusals] == [2, 2], refusals
    assert lines[0] == lines[1] and len(lines[0]) == 1 and "(--units 16 → 32)" in lines[0][0], lines
    assert {p.name: p.read_bytes() for p in (job / "backup").iterdir()} == backup


@pytest.mark.slow
def test_sigkill_after_epoch_two_resumes_at_epoch_three(records_dir, tmp_path):
    job = tmp_path / "job"
    argv = [
        sys.executable,
        "-m",
        "trainer.task",
        "--data-dir",
        str(records_dir),
        "--job-dir",
        str(job),
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "150",
        "--learning-rate",
        "0.02",
        *TINY,
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seen = []
    try:
        for line in proc.stdout:  # the line is printed after the epoch's backup is saved
            seen.append(line)
            if line.startswith("trainer: epoch 2/4 finished"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and not any(
            line.startswith("trainer: epoch 2/4 finished") for line in seen
        ):
            proc.kill()
        proc.wait(timeout=60)
        seen += proc.stdout.read().splitlines(keepends=True)
    first = "".join(seen)
    assert proc.returncode == -signal.SIGKILL, first
    assert sorted(epoch_losses(first)) == [1, 2], first
    assert not (job / "model" / "model.keras").exists()

    # Started again on data of another sequence length: refused by name, nothing written or lost.
    import synthetic

    synthetic.write_dataset(
        str(tmp_path / "data6"), train_pieces=4, validation_pieces=2, sequence_length=6
    )
    files = {p: p.read_bytes() for p in sorted(job.rglob("*")) if p.is_file()}
    other = run([a if a != str(records_dir) else str(tmp_path / "data6") for a in argv])
    assert (
        other.returncode == 2
        and "(sequence_length 8 → 6; vocab_size" in other.stderr
        and "Traceback" not in other.stderr
    )
    assert {p: p.read_bytes() for p in sorted(job.rglob("*")) if p.is_file()} == files

    # Started again as it was, but with another learning rate: it resumes, and the new rate is used.
    second = run([*argv, "--learning-rate", "0.05"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert (
        "resuming from backup" in second.stdout
        and "epoch 2 finished, continuing with epoch 3" in second.stdout
    )
    assert "--learning-rate 0.02 → 0.05 (changed on resume)" in second.stdout
    assert re.search(r"epoch 3/4 finished: .*learning_rate=0.05 ", second.stdout), second.stdout
    assert sorted(epoch_losses(second.stdout)) == [3, 4]
    assert (job / "model" / "model.keras").exists()
    # TensorBoard holds every epoch once it is over: 1-2 from the first run, 3-4 from the second.
    assert sorted({step for step, _ in scalars(str(job / "logs"))["epoch/loss"]}) == [1, 2, 3, 4]
