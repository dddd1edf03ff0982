"""Issue 10, point 3: one file must not stall the whole job.

The reproduction: a small valid MIDI file with one absurd delta time (0x0FFFFFFF ticks before a
note-on, 3 bytes inserted) keeps music21 busy for about a minute on this machine (38-57 s measured;
more than 180 s where it was reported), against 0.04 s for the file without it. The length pre-check
of ``preprocessing.encodings.midi_container`` refuses that file at once; a file that passes the
pre-check and is still slow is stopped by ``--max-seconds-per-file``. Both end as one dead letter
each, the job goes on, every good file's windows are written, and no parse child outlives the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import patterned_tokens, write_tokens_midi
from helpers import wait_until_gone, with_silent_gap
from stored import windows_in

from preprocessing import budgeted_child, pipeline, reader, records, windowing
from preprocessing.encodings import midi_container, reference

SEQ = 8
TICKS_PER_QUARTER = 10080  # what music21 writes
GENEROUS_SECONDS = 240  # a whole run on this shared 2-core machine takes 10-40 s


def windows_written(out: Path, manifest: records.Manifest) -> Counter:
    return sum((windows_in(out, manifest, split) for split in records.SPLITS), Counter())


def windows_expected(good: dict[str, list[str]], vocab: list[str]) -> Counter:
    index = {token: i for i, token in enumerate(vocab)}
    return Counter(
        (tuple(inputs), target)
        for tokens in good.values()
        for inputs, target in windowing.windows([index[t] for t in tokens], SEQ)
    )


class ParseChildren:
    """Every parse child of one run, seen in /proc while it runs (by an environment marker that the
    workers and their children inherit), so that the test can check none is left afterwards."""

    def __init__(self, monkeypatch):
        self.marker = f"LSTM_COMPOSER_TEST_RUN={uuid.uuid4().hex}".encode()
        monkeypatch.setenv(*self.marker.decode().split("="))
        self.seen: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            for entry in Path("/proc").iterdir():
                try:
                    if (
                        entry.name.isdigit()
                        and budgeted_child.CHILD_MODULE.encode() in (entry / "cmdline").read_bytes()
                        and self.marker in (entry / "environ").read_bytes()
                    ):
                        self.seen.add(int(entry.name))
                except OSError:
                    pass  # gone meanwhile, or not ours

    def __enter__(self) -> ParseChildren:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join()

    def left_after(self, seconds: float = 60) -> list[int]:
        return [pid for pid in self.seen if not wait_until_gone(pid, seconds)]


def folder_with(tmp_path: Path, bad_name: str, gap_ticks: int) -> tuple[Path, dict[str, list[str]]]:
    """Three good pieces and one made bad by a silent gap of ``gap_ticks`` before its sixth note."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = {}
    for index in range(3):
        good[f"good_{index}.mid"] = patterned_tokens(seed=20 + index, length=40 + 5 * index)
        write_tokens_midi(folder / f"good_{index}.mid", good[f"good_{index}.mid"])
    sound = reference.midi_bytes_from_tokens(patterned_tokens(seed=30, length=40))
    (folder / bad_name).write_bytes(with_silent_gap(sound, gap_ticks, before_note=5))
    return folder, good


def run_and_check(
    folder: Path, good: dict[str, list[str]], out: Path, *flags: str
) -> tuple[dict, float]:
    """Run the job; check that no good file is lost; return the one dead letter and the wall
    time."""
    started = time.monotonic()
    outcome = pipeline.run(
        [
            "--input",
            str(folder),
            "--output",
            str(out),
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            "0",
            *flags,
        ]
    )
    seconds = time.monotonic() - started
    counts = outcome.manifest.counts
    assert (counts["files_matched"], counts["files_parsed"], counts["files_failed"]) == (4, 3, 1)
    assert counts["tokens"] == sum(map(len, good.values()))
    assert outcome.metrics["files_failed"] == 1 and outcome.metrics["files_parsed"] == 3
    vocab = reader.read_vocab(str(out))
    assert vocab == sorted({token for tokens in good.values() for token in tokens})
    assert windows_written(out, outcome.manifest) == windows_expected(good, vocab)
    lines = (out / records.DEAD_LETTER_FILE).read_text().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0]), seconds


@pytest.mark.slow
def test_the_reproduction_is_one_dead_letter_and_no_good_file_is_lost(tmp_path, monkeypatch):
    """Issue 10's file, exactly (0x0FFFFFFF ticks, 3 bytes inserted), on the default runner (the
    DirectRunner's worker processes), with a small budget."""
    folder, good = folder_with(tmp_path, "stalls.mid", 0x0FFFFFFF)
    with ParseChildren(monkeypatch) as children:
        dead, seconds = run_and_check(
            folder,
            good,
            tmp_path / "out",
            "--max-seconds-per-file",
            "2",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        )
    assert dead["path"].endswith("stalls.mid")
    # refused before music21
    assert "lasts 26,6" in dead["error"] and "quarter notes" in dead["error"]
    assert seconds < GENEROUS_SECONDS
    assert children.seen, "no parse child was seen: the watch is blind"
    assert children.left_after() == []


@pytest.mark.slow
def test_a_slow_file_that_passes_the_precheck_is_stopped_by_the_budget(tmp_path, monkeypatch):
    """A gap just short of the pre-check's limit: music21 would still take tens of seconds. On the
    DirectRunner's threads in this process (as Dataflow runs DoFns), the budget stops it."""
    gap = (midi_container.MAX_QUARTER_NOTES - 1_000) * TICKS_PER_QUARTER
    folder, good = folder_with(tmp_path, "slow.mid", gap)
    midi_container.check_midi_length((folder / "slow.mid").read_bytes())  # passes the pre-check
    with ParseChildren(monkeypatch) as children:
        dead, seconds = run_and_check(
            folder,
            good,
            tmp_path / "out",
            "--max-seconds-per-file",
            "2",
            "--direct_running_mode=multi_threading",
            "--direct_num_workers=2",
        )
    assert dead == {
        "path": str(folder / "slow.mid"),
        "error": "took more than --max-seconds-per-file 2 s of CPU time to parse; stopped",
    }
    assert seconds < GENEROUS_SECONDS
    assert children.seen, "no parse child was seen: the watch is blind"
    assert children.left_after() == []


def test_the_budget_flag_is_checked_and_documented(capsys):
    from preprocessing import options

    assert options.parse_args(["--output", "x"])[0].max_seconds_per_file == 60
    assert (
        options.parse_args(["--output", "x", "--max-seconds-per-file", "2.5"])[
            0
        ].max_seconds_per_file
        == 2.5
    )
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            options.parse_args(["--output", "x", "--max-seconds-per-file", bad])
        assert (
            "--max-seconds-per-file must be a positive number of seconds" in capsys.readouterr().err
        )
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "--max-seconds-per-file" in readme


def test_the_beam_workers_modules_do_not_import_music21():
    """A worker unpickles the DoFns of transforms and direct_runner: it imports Beam alone, and
    its parse child music21 alone (the child's import replaces the one the worker made before)."""
    code = (
        "import sys, preprocessing.transforms, preprocessing.direct_runner, preprocessing.budgeted_child; "
        "assert 'music21' not in sys.modules, 'music21 imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr
