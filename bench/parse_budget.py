"""Benchmark: what parsing each file in a killable child process costs, against parsing in the
worker.

Since every file parses under a time budget (``--max-seconds-per-file``), ``ParseMidi`` sends each
file's bytes to a long-lived child (``preprocessing.budgeted_child.BudgetedFunction``) instead of
calling ``reference.tokens_from_midi_bytes`` itself. This benchmark isolates that change from Beam's
own scheduling: in one process set up as a worker was before (Beam imported, then
``freeze_long_lived_objects()``) it parses every file of the embedded dataset both ways, alternating
which goes first from file to file, and adds up wall time and CPU time (for the child way: this
process's CPU during the calls plus the child's, from ``/proc``). CPU time moves little with other
jobs' load on a shared machine; wall time moves a lot. It also times the structural pre-check
(``midi_container.check_midi_length``, part of both ways) and the child's start-up.

    python bench/parse_budget.py [--input DIR] [--parts first|all] [--repeats 1]

The last line is a JSON object of the figures (Linux: the child's CPU time is read from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/preprocess.py's midi_paths


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(datas: list[bytes], parts: str, child) -> dict[str, float]:
    from preprocessing.encodings import reference

    totals = {"in_process_s": 0.0, "in_process_cpu_s": 0.0, "child_s": 0.0, "child_cpu_s": 0.0}
    child_cpu_before = process_cpu(child.pid)
    for index, data in enumerate(datas):
        tokens = {}
        for way in ("in_process", "child") if index % 2 == 0 else ("child", "in_process"):
            parse = reference.tokens_from_midi_bytes if way == "in_process" else child
            wall, cpu = time.perf_counter(), time.process_time()
            tokens[way] = parse(data, parts)
            totals[f"{way}_s"] += time.perf_counter() - wall
            totals[f"{way}_cpu_s"] += time.process_time() - cpu
        if tokens["in_process"] != tokens["child"]:
            raise SystemExit(f"file {index}: the child read different tokens")
    totals["child_cpu_s"] += process_cpu(child.pid) - child_cpu_before
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="MIDI folder (default: the embedded dataset)")
    parser.add_argument("--parts", choices=("first", "all"), default="first")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    from preprocess import midi_paths

    from preprocessing import (  # noqa: F401 - a worker's imports
        budgeted_child,
        direct_runner,
        pipeline,
        sample_data,
    )
    from preprocessing.encodings import midi_container, reference

    direct_runner.freeze_long_lived_objects()  # a worker as it was before the budget
    datas = [path.read_bytes() for path in midi_paths(args.input or sample_data.ensure_dataset())]
    started = time.perf_counter()
    child = budgeted_child.BudgetedFunction(reference.tokens_from_midi_bytes, 600)
    child.start()
    child._wait_until_ready()  # noqa: SLF001 - timing the start-up on its own
    start_s = time.perf_counter() - started
    check_started = time.process_time()
    for data in datas:
        midi_container.check_midi_length(data)
    check_cpu_s = time.process_time() - check_started
    rounds = []
    try:
        for index in range(args.repeats):
            rounds.append(one_round(datas, args.parts, child))
            r = rounds[-1]
            print(
                f"round {index + 1}: in the worker {r['in_process_s']:.1f} s ({r['in_process_cpu_s']:.1f} CPU-s), "
                f"in a child {r['child_s']:.1f} s ({r['child_cpu_s']:.1f} CPU-s)",
                flush=True,
            )
    finally:
        child.stop()
    figures = {
        "files": len(datas),
        "parts": args.parts,
        "rounds": args.repeats,
        "child_start_s": round(start_s, 2),
        "precheck_cpu_s": round(check_cpu_s, 3),
        **{key: round(min(r[key] for r in rounds), 2) for key in rounds[0]},
        "child_over_in_process": round(
            statistics.median(r["child_s"] / r["in_process_s"] for r in rounds), 3
        ),
        "child_over_in_process_cpu": round(
            statistics.median(r["child_cpu_s"] / r["in_process_cpu_s"] for r in rounds), 3
        ),
    }
    print(
        f"{len(datas)} files: the child takes {figures['child_over_in_process']}x the wall time and "
        f"{figures['child_over_in_process_cpu']}x the CPU time of parsing in the worker (median of the rounds); "
        f"the child starts in {start_s:.2f} s; the pre-check costs {check_cpu_s:.3f} CPU-s for all files"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
