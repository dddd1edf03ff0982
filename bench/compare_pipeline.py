"""Benchmark: the preprocessing pipeline of two checkouts against each other, alternating, same
input.

For a change that must not slow the pipeline down (a restructuring, a Beam upgrade): check the old
revision out beside this one (``git worktree add /tmp/base <commit>``), then

    python bench/compare_pipeline.py --old /tmp/base [--new .] [--input DIR] [--rounds 4]

Each side runs in a fresh process with ``PYTHONPATH`` set to its checkout (Beam's worker processes
inherit it, so they import that side's code too; the child checks it) and times it with
``bench/preprocess.py``'s own ``pipeline_run``. The order alternates between rounds, and the figure
is the median of the rounds' old/new ratios (above 1: the new side is faster), of wall time and of
CPU time (the launching process and every process below it that was reaped: on a machine shared with
other jobs, wall time moves with their load, CPU time much less). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
CHILD = r"""
import ctypes, json, os, resource, sys, time
sys.path.insert(0, sys.argv[3])  # this bench folder: bench/preprocess.py's own timed call
from preprocess import pipeline_run
from preprocessing import pipeline  # resolved through PYTHONPATH: the side's checkout
try:  # PR_SET_CHILD_SUBREAPER (Linux): a process orphaned below this one comes back here to be reaped
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
except (AttributeError, OSError):
    pass
seconds, tokens = pipeline_run(sys.argv[1], int(sys.argv[2]))
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # reap the orphans, so that their CPU time counts too
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            time.sleep(0.05)
    except ChildProcessError:
        break
# CPU time of this process and of every process below it, reaped: the work done, which another
# engineer's load moves much less than the wall time.
cpu = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
print(json.dumps({"file": pipeline.__file__, "seconds": seconds, "tokens": tokens, "cpu_seconds": cpu}))
"""


def run_side(root: str, input_dir: str, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, input_dir, str(workers), BENCH],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"the pipeline of {root} failed:\n{result.stderr[-2000:]}")
    figures = json.loads(lines[-1])
    if not os.path.realpath(figures["file"]).startswith(os.path.realpath(root)):
        raise SystemExit(
            f"{root}: the child imported {figures['file']}, not this checkout's pipeline"
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="checkout of the old revision")
    parser.add_argument(
        "--new",
        default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        help="checkout of the new revision (default: this one)",
    )
    parser.add_argument("--input", default=None, help="MIDI folder (default: the embedded dataset)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0 (default): each side's own local defaults; N: multi_processing over N workers",
    )
    args = parser.parse_args(argv)
    if args.input is None:
        sys.path.insert(0, args.new)
        from preprocessing import sample_data

        args.input = sample_data.ensure_dataset()
    sides = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    tokens = set()
    for index in range(args.rounds):
        for side in ("old", "new") if index % 2 == 0 else ("new", "old"):
            figures = run_side(sides[side], args.input, args.workers)
            seconds[side].append(figures["seconds"])
            cpu[side].append(figures["cpu_seconds"])
            tokens.add(figures["tokens"])
            print(
                f"round {index + 1} {side}: {figures['seconds']:.1f} s, {figures['cpu_seconds']:.1f} CPU-s "
                f"({figures['tokens']} tokens)",
                flush=True,
            )
    if len(tokens) != 1:
        print(
            f"warning: the two sides read different token counts: {sorted(tokens)}", file=sys.stderr
        )
    median = statistics.median(old / new for old, new in zip(seconds["old"], seconds["new"]))
    cpu_median = statistics.median(old / new for old, new in zip(cpu["old"], cpu["new"]))
    print(
        f"old / new: {median:.3f} wall, {cpu_median:.3f} CPU (medians of {args.rounds} rounds; above 1, the new "
        "side is faster)"
    )
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "workers": args.workers,
                "old_s": [round(s, 2) for s in seconds["old"]],
                "new_s": [round(s, 2) for s in seconds["new"]],
                "old_over_new_median": round(median, 3),
                "old_cpu_s": [round(s, 2) for s in cpu["old"]],
                "new_cpu_s": [round(s, 2) for s in cpu["new"]],
                "old_over_new_cpu_median": round(cpu_median, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
