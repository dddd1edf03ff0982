"""Issue 18: Ctrl-C stops a job with one line that says what was interrupted and how to go on.

Each job runs as a terminal runs it: in a process group of its own, which Ctrl-C (SIGINT to the
whole group) reaches. The signal is sent once the job is demonstrably mid-work (a parse child
running, an epoch under way), never after a fixed wait.
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
from helpers import TINY, with_silent_gap

from preprocessing import direct_runner, quiet
from preprocessing.encodings import midi_container, reference

ROOT = Path(__file__).resolve().parents[1]
PATIENCE = 300.0  # seconds to wait for a condition; a condition, not a timing, is what is tested


def descendants(pid: int) -> dict[int, str]:
    """Process id -> command line of every process below ``pid`` (Linux ``/proc``)."""
    parents, commands = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child], commands[child] = int(fields[1]), command
    below, frontier = {}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        below.update({child: commands[child] for child in frontier})
    return below


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.2)


def user_environment() -> dict[str, str]:
    """The environment a user's shell gives: no log level of the tests', not verbose."""
    hidden = ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)
    return {key: value for key, value in os.environ.items() if key not in hidden}


def start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lstm_composer", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=user_environment(),
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
        # A shell starts a background job with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the job the default a terminal's foreground job has.
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c(process: subprocess.Popen) -> tuple[str, str]:
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, (out, err)
    return out, err


@pytest.mark.slow
def test_ctrl_c_while_preprocessing_is_one_line_and_leaves_no_process(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for index in range(3):
        write_tokens_midi(src / f"tune_{index}.mid", patterned_tokens(400 + index, 40))
    # a minute of music21 parsing: the job is surely mid-parse when Ctrl-C comes
    slow = reference.midi_bytes_from_tokens(patterned_tokens(7, 40))
    gap = (midi_container.MAX_QUARTER_NOTES - 1_000) * 10_080  # ticks, at music21's resolution
    (src / "slow.mid").write_bytes(with_silent_gap(slow, gap, before_note=5))
    out = tmp_path / "out"
    job = start("preprocess", "--input", str(src), "--output", str(out), "--sequence-length", "8")
    wait_for(
        lambda: any("budgeted_child" in c for c in descendants(job.pid).values()), "a parse child"
    )
    _, err = ctrl_c(job)
    assert err.strip().splitlines() == [
        "lstm-composer preprocess: interrupted: this run published nothing, and the output folder "
        "holds what it held before (a finished output there stays readable); run the same "
        "command again"
    ]
    gone = lambda: not direct_runner.processes_of(job.pid)  # noqa: E731
    wait_for(gone, "every worker and parse child gone (found by their launcher's mark)")
    assert not (out / "manifest.json").exists()


@pytest.mark.slow
def test_ctrl_c_while_training_is_one_line_and_the_next_run_resumes(records_dir, tmp_path):
    job_dir = tmp_path / "job"
    argv = ["train", "--data-dir", str(records_dir), "--job-dir", str(job_dir), *TINY]
    job = start(*argv, "--epochs", "1000", "--batch-size", "4", "--sample-every", "0")
    lines: list[str] = []
    wait_for(lambda: lines.append(job.stdout.readline()) or "finished" in lines[-1], "an epoch")
    _, err = ctrl_c(job)
    assert err.strip().splitlines() == [
        "lstm-composer train: interrupted: the backup in the job directory keeps every finished "
        "epoch; run the same command again to resume after the last one"
    ]
    again = subprocess.run(
        [sys.executable, "-m", "lstm_composer", *argv, "--epochs", "2", "--batch-size", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=user_environment(),
        timeout=PATIENCE,
    )
    assert again.returncode == 0 and "resuming from backup" in again.stdout, again.stderr
