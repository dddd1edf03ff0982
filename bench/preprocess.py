"""Benchmark: the reference's sequential parse loop against the Beam pipeline, on the embedded
dataset.

Both are timed in this one run on this machine, so the ratio is meaningful even where absolute times
are not (shared, noisy machines):

* sequential: the reference notebook's ``get_notes`` loop in one fresh process (music21 loaded, no
  Beam), with the same music21 calls (``converter.parse(path)`` then
  ``partitionByInstrument(...).parts[0].recurse()``);
* pipeline: ``preprocessing.pipeline`` on the DirectRunner as ``preprocess`` runs it (in memory,
  a parse child per core fed from one queue; ``--workers N``: multi-processing over N worker
  processes, each with its share of the cores), end to end (match, parse, vocabulary, windows,
  TFRecords, manifest), with ``--parts first`` so that both extract the same notes.

Prints files/s of each and the speed-up; the last line is a JSON object of the figures. With
``--repeats N`` it times N rounds, alternating which of the two goes first, and reports the median
of the per-round ratios (the machine's speed drifts between minutes; a ratio within a round is what
compares). It also reports the share of the reference loop's time spent in Python's garbage
collector (``bench/parse_gc.py`` measures what Beam's presence and the workers' ``gc.freeze()`` do
to it), and, from the per-file parse times, how far from a perfect split over the workers a static
split (``--workers N``: size-balanced groups) and a ``Reshuffle``'s random keys would land.

The encodings (issue 11), in the same run: the parse-and-tokenize step of each encoding
(``Encoding.encode``, ``--parts all``) over every file, in one fresh process that holds both, file
by file alternately, timed in CPU seconds of that process (files per CPU-second = files per second
per core), with each encoding's vocabulary size and tokens per piece; and the whole pipeline with
``--encoding reference`` and ``--encoding remi`` (wall time, and the CPU time of the process tree in
a fresh process). ``--compare loop`` runs only the first part, ``--compare encodings`` only this.

    python bench/preprocess.py [--input DIR] [--workers 0|N] [--repeats 1] [--compare
    all|loop|encodings]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class GcClock:
    """Seconds spent in the garbage collector while active (``gc.callbacks``: exact, near free)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc) -> None:
        gc.callbacks.remove(self)


def reference_loop(paths: list[Path]) -> tuple[float, int, float, list[float]]:
    """The notebook's get_notes over ``paths``: returns (seconds, tokens, seconds in the collector,
    seconds per file)."""
    from music21 import converter

    from preprocessing.encodings import reference

    tokens, per_file = 0, []
    with GcClock() as gc_clock:
        start = time.perf_counter()
        for path in paths:
            file_start = time.perf_counter()
            midi = converter.parse(str(path), forceSource=True)  # forceSource: no parse cache
            tokens += len(reference.tokens_first_part(midi))
            per_file.append(time.perf_counter() - file_start)
        seconds = time.perf_counter() - start
    return seconds, tokens, gc_clock.seconds, per_file


def schedule_figures(
    paths: list[Path], per_file: list[float], workers: int, draws: int = 1000
) -> dict:
    """How long the slowest of ``workers`` would parse, given each file's measured time: with the
    pipeline's size-balanced groups (``SpreadFiles`` on the DirectRunner) and with random keys (a
    ``Reshuffle``), against a perfect split. Simulated from the sequential times, so no noise."""
    import random

    from preprocessing.direct_runner import balance_by_size

    def makespan(assignment: list[int]) -> float:
        loads = [0.0] * workers
        for seconds, bucket in zip(per_file, assignment):
            loads[bucket] += seconds
        return max(loads)

    ideal = sum(per_file) / workers
    by_size = makespan(balance_by_size([path.stat().st_size for path in paths], workers))
    rng = random.Random(0)
    random_keys = sorted(makespan([rng.randrange(workers) for _ in per_file]) for _ in range(draws))
    return {
        "parse_ideal_s": round(ideal, 2),
        "parse_size_balanced_over_ideal": round(by_size / ideal, 3),
        "parse_random_keys_over_ideal_median": round(random_keys[draws // 2] / ideal, 3),
        "parse_random_keys_over_ideal_p90": round(random_keys[draws * 9 // 10] / ideal, 3),
    }


def reference_loop_in_fresh_process(input_dir: str) -> tuple[float, int, float, list[float]]:
    """:func:`reference_loop` in a new interpreter, as the notebook runs it: music21 alone, no Beam.

    After a pipeline run this process holds Beam's objects too, and every full garbage collection
    would walk them, slowing the reference loop by a fifth (``bench/parse_gc.py``); a fresh process
    keeps every round's baseline the same.
    """
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--input", input_dir, "--reference-loop-only"],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return figures["seconds"], figures["tokens"], figures["gc_seconds"], figures["per_file"]


def midi_paths(input_dir: str) -> list[Path]:
    # Not preprocessing.files.is_midi_path: importing that module loads Beam, and the reference
    # loop's process must hold music21 alone.
    return sorted(p for p in Path(input_dir).rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def pipeline_run(input_dir: str, workers: int = 0, *flags: str) -> tuple[float, int]:
    """The Beam pipeline over ``input_dir`` (``--parts first`` unless ``flags`` say otherwise):
    returns (seconds, tokens). ``workers`` 0: the DirectRunner as ``preprocess`` runs it by default
    (its local defaults); N: ``multi_processing`` over N worker processes."""
    from preprocessing import pipeline

    # run(argv); a checkout from before the rename (bench/compare_pipeline.py --old) calls it
    # run_pipeline
    run = getattr(pipeline, "run_pipeline", pipeline.run)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = run(
            [
                "--input",
                input_dir,
                "--output",
                out,
                *(flags or ("--parts", "first")),
                *(
                    ("--direct_running_mode", "multi_processing", f"--direct_num_workers={workers}")
                    if workers
                    else ()
                ),
            ]
        )
        seconds = time.perf_counter() - start
    return seconds, outcome.manifest.counts["tokens"]


ENCODINGS = ("reference", "remi")


def tokenize_both(paths: list[Path]) -> dict:
    """Each file's bytes through each encoding's ``encode`` (``parts="all"``), alternating which
    goes first file by file, after one warm-up file each (imports, MidiTok's tables): CPU seconds
    of this process per encoding, tokens per piece and the vocabulary of the files that parse."""
    from preprocessing.encodings import loader

    codecs = {name: loader.get(name) for name in ENCODINGS}
    for codec in codecs.values():
        codec.encode(paths[0].read_bytes())
    cpu = dict.fromkeys(ENCODINGS, 0.0)
    tokens: dict[str, list[int]] = {name: [] for name in ENCODINGS}
    vocab: dict[str, set] = {name: set() for name in ENCODINGS}
    failed = dict.fromkeys(ENCODINGS, 0)
    for index, path in enumerate(paths):
        data = path.read_bytes()
        for name in ENCODINGS if index % 2 == 0 else ENCODINGS[::-1]:
            start = time.process_time()
            try:
                piece = codecs[name].encode(data)
            except ValueError:  # MidiParseError: a bad file costs its parse all the same
                piece = None
            cpu[name] += time.process_time() - start
            if piece is None:
                failed[name] += 1
            else:
                tokens[name].append(len(piece))
                vocab[name].update(piece)
    return {
        name: {
            "cpu_s": cpu[name],
            "failed": failed[name],
            "tokens": sum(tokens[name]),
            "tokens_per_piece": statistics.mean(tokens[name]) if tokens[name] else 0.0,
            "vocab_size": len(vocab[name]),
        }
        for name in ENCODINGS
    }


def pipeline_in_fresh_process(input_dir: str, workers: int, name: str) -> dict:
    """``bench/compare_pipeline.py``'s child (wall and reaped CPU time) with
    ``--encoding name --parts all``."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare_pipeline import CHILD

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = CHILD.replace(
        "pipeline_run(sys.argv[1], int(sys.argv[2]))",
        f"pipeline_run(sys.argv[1], int(sys.argv[2]), '--encoding', {name!r}, '--parts', 'all')",
    )
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            input_dir,
            str(workers),
            os.path.dirname(os.path.abspath(__file__)),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"the {name} pipeline failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])


def compare_encodings(input_dir: str, paths: list[Path], workers: int) -> dict:
    """The encodings' figures (see the module's docstring), printed as they come."""
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--input", input_dir, "--tokenize-only"],
        check=True,
        capture_output=True,
        text=True,
    )
    tokenized = json.loads(result.stdout.strip().splitlines()[-1])
    figures: dict = {}
    for name in ENCODINGS:
        t = tokenized[name]
        rate = (len(paths) - t["failed"]) / t["cpu_s"] if t["cpu_s"] else float("inf")
        figures[f"{name}_tokenize_cpu_s"] = round(t["cpu_s"], 3)
        figures[f"{name}_files_per_cpu_s"] = round(rate, 2)
        figures[f"{name}_vocab_size"] = t["vocab_size"]
        figures[f"{name}_tokens_per_piece"] = round(t["tokens_per_piece"], 1)
        print(
            f"{name}: parse and tokenize {rate:.2f} files per CPU-second ({t['cpu_s']:.1f} CPU-s for "
            f"{len(paths)} files), vocabulary {t['vocab_size']}, {t['tokens_per_piece']:.0f} tokens per piece",
            flush=True,
        )
    figures["remi_over_reference_tokenize"] = round(
        figures["remi_files_per_cpu_s"] / figures["reference_files_per_cpu_s"], 1
    )
    print(
        f"REMI / reference, parse and tokenize per core: {figures['remi_over_reference_tokenize']}x",
        flush=True,
    )
    for name in ENCODINGS:  # the whole pipeline, --parts all, each in a fresh process
        run = pipeline_in_fresh_process(input_dir, workers, name)
        figures[f"{name}_pipeline_s"] = round(run["seconds"], 2)
        figures[f"{name}_pipeline_cpu_s"] = round(run["cpu_seconds"], 2)
        print(
            f"{name}: whole pipeline {run['seconds']:.1f} s, {run['cpu_seconds']:.1f} CPU-s "
            f"({run['tokens']} tokens)",
            flush=True,
        )
    figures["reference_over_remi_pipeline"] = round(
        figures["reference_pipeline_s"] / figures["remi_pipeline_s"], 2
    )
    figures["reference_over_remi_pipeline_cpu"] = round(
        figures["reference_pipeline_cpu_s"] / figures["remi_pipeline_cpu_s"], 2
    )
    print(
        f"whole pipeline, reference / REMI: {figures['reference_over_remi_pipeline']}x wall, "
        f"{figures['reference_over_remi_pipeline_cpu']}x CPU",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="MIDI folder (default: the embedded dataset)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0 (default): the pipeline as preprocess runs it (in memory, a parse child per core); "
        "N: multi_processing over N worker processes",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the ratio is their median")
    parser.add_argument(
        "--compare",
        choices=("all", "loop", "encodings"),
        default="all",
        help="loop: the reference loop against the pipeline; encodings: REMI against reference",
    )
    parser.add_argument("--reference-loop-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tokenize-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.reference_loop_only:  # the child process of reference_loop_in_fresh_process
        seconds, tokens, gc_seconds, per_file = reference_loop(midi_paths(args.input))
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "tokens": tokens,
                    "gc_seconds": gc_seconds,
                    "per_file": per_file,
                }
            )
        )
        return 0
    if args.tokenize_only:  # the child process of compare_encodings
        print(json.dumps(tokenize_both(midi_paths(args.input))))
        return 0

    from preprocessing import sample_data

    input_dir = args.input or sample_data.ensure_dataset()
    paths = midi_paths(input_dir)
    how = (
        f"{args.workers} worker processes"
        if args.workers
        else "preprocess's defaults (in memory, a parse child per core)"
    )
    print(f"{len(paths)} MIDI files in {input_dir}; the pipeline with {how}")
    figures = {"files": len(paths), "cores": os.cpu_count(), "workers": args.workers}
    if args.compare in ("all", "encodings"):
        figures.update(compare_encodings(input_dir, paths, args.workers))
    if args.compare == "encodings":
        print(json.dumps(figures))
        return 0

    rounds = []
    for round_index in range(args.repeats):
        order = ("sequential", "pipeline") if round_index % 2 == 0 else ("pipeline", "sequential")
        timed: dict[str, tuple] = {}
        for name in order:
            if name == "sequential":
                timed[name] = reference_loop_in_fresh_process(input_dir)
            else:
                timed[name] = pipeline_run(input_dir, args.workers)
        (seq_s, seq_tokens, gc_s, per_file), (pipe_s, pipe_tokens) = (
            timed["sequential"],
            timed["pipeline"],
        )
        if seq_tokens != pipe_tokens:
            print(
                f"error: the two read different music ({seq_tokens} vs {pipe_tokens} tokens)",
                file=sys.stderr,
            )
            return 1
        rounds.append((seq_s, pipe_s, gc_s, per_file))
        print(
            f"round {round_index + 1}: sequential {seq_s:.1f} s ({100 * gc_s / seq_s:.0f} % in the garbage "
            f"collector), pipeline {pipe_s:.1f} s, ratio {seq_s / pipe_s:.2f}"
        )
    seq_s = min(r[0] for r in rounds)
    pipe_s = min(r[1] for r in rounds)
    figures.update(
        {
            "tokens": seq_tokens,
            "rounds": args.repeats,
            "sequential_s": round(seq_s, 2),
            "pipeline_s": round(pipe_s, 2),
            "sequential_files_per_s": round(len(paths) / seq_s, 2),
            "pipeline_files_per_s": round(len(paths) / pipe_s, 2),
            "sequential_gc_share": round(statistics.median(r[2] / r[0] for r in rounds), 3),
            "speedup": round(statistics.median(r[0] / r[1] for r in rounds), 2),
        }
    )
    # per-file times of the fastest sequential round
    spread = args.workers or os.cpu_count() or 1
    figures.update(schedule_figures(paths, min(rounds, key=lambda r: r[0])[3], spread))
    best = " (best round)" if args.repeats > 1 else ""
    print(
        f"sequential reference loop: {figures['sequential_files_per_s']} files/s ({seq_s:.1f} s){best}"
    )
    print(
        f"Beam pipeline (DirectRunner, {how}): {figures['pipeline_files_per_s']} files/s "
        f"({pipe_s:.1f} s{best}, end to end including windows and TFRecords)"
    )
    median = " (median of the rounds' ratios)" if args.repeats > 1 else ""
    print(f"speed-up: {figures['speedup']}x{median}")
    print(
        f"static split over {spread} workers (multi_processing), simulated from the per-file times: size-balanced groups "
        f"{figures['parse_size_balanced_over_ideal']}x a perfect split, random keys "
        f"{figures['parse_random_keys_over_ideal_median']}x (median) and "
        f"{figures['parse_random_keys_over_ideal_p90']}x (p90)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
