"""Benchmark: the reference's sequential parse loop against the Beam pipeline, on the embedded dataset.

Both are timed in this one run on this machine, so the ratio is meaningful even where absolute times
are not (shared, noisy machines):

* sequential: the reference notebook's ``get_notes`` loop in one process, with the same music21
  calls (``converter.parse(path)`` then ``partitionByInstrument(...).parts[0].recurse()``);
* pipeline: ``preprocessing.pipeline`` on the DirectRunner in multi-processing mode over all cores,
  end to end (match, parse, vocabulary, windows, TFRecords, manifest), with ``--parts first`` so that
  both extract the same notes.

Prints files/s of each and the speed-up; the last line is a JSON object of the figures.

    python bench/preprocess.py [--input DIR] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def reference_loop(paths: list[Path]) -> tuple[float, int]:
    """The notebook's get_notes over ``paths``: returns (seconds, tokens)."""
    from music21 import converter

    from preprocessing import notes

    start = time.perf_counter()
    tokens = 0
    for path in paths:
        midi = converter.parse(str(path), forceSource=True)  # forceSource: no parse cache
        tokens += len(notes.tokens_first_part(midi))
    return time.perf_counter() - start, tokens


def pipeline_run(input_dir: str, workers: int) -> tuple[float, int]:
    """The Beam pipeline over ``input_dir``: returns (seconds, tokens)."""
    from preprocessing import pipeline

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = pipeline.run_pipeline(
            ["--input", input_dir, "--output", out, "--parts", "first",
             "--direct_running_mode", "multi_processing", f"--direct_num_workers={workers}"]
        )
        seconds = time.perf_counter() - start
    return seconds, outcome.manifest.counts["tokens"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="MIDI folder (default: the embedded dataset)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    from preprocessing import sample_data

    input_dir = args.input or sample_data.ensure_dataset()
    paths = sorted(p for p in Path(input_dir).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    print(f"{len(paths)} MIDI files in {input_dir}; {args.workers} worker processes for the pipeline")

    seq_s, seq_tokens = reference_loop(paths)
    pipe_s, pipe_tokens = pipeline_run(input_dir, args.workers)
    if seq_tokens != pipe_tokens:
        print(f"error: the two read different music ({seq_tokens} vs {pipe_tokens} tokens)", file=sys.stderr)
        return 1
    figures = {
        "files": len(paths),
        "tokens": seq_tokens,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "sequential_s": round(seq_s, 2),
        "pipeline_s": round(pipe_s, 2),
        "sequential_files_per_s": round(len(paths) / seq_s, 2),
        "pipeline_files_per_s": round(len(paths) / pipe_s, 2),
        "speedup": round(seq_s / pipe_s, 2),
    }
    print(f"sequential reference loop: {figures['sequential_files_per_s']} files/s ({seq_s:.1f} s)")
    print(f"Beam pipeline (DirectRunner, {args.workers} processes): {figures['pipeline_files_per_s']} files/s "
          f"({pipe_s:.1f} s, end to end including windows and TFRecords)")
    print(f"speed-up: {figures['speedup']}x")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
