"""What a training setting buys on real data: validation accuracy against the bigram, minutes, CPU
time.

``python bench/quality.py --data-dir DIR [--label NAME] -- TRAIN FLAGS...`` runs
``lstm-composer train`` in a child process (a fresh job directory each time) and prints one JSON
line: the setting, every epoch's validation accuracy, the exported (best by validation loss) epoch
and its accuracy, the unigram and bigram baselines, wall and CPU seconds of the child, and the load
average before and after (the machine may be shared: wall time is inflated by load, CPU time much
less so). ``docs/PERFORMANCE.md`` records the table these lines make for the quickstart's dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH = re.compile(r"trainer: epoch (\d+)/\d+ finished: .*?val_loss=([\d.]+) val_accuracy=([\d.]+)")
BASELINES = re.compile(
    r"baselines \(validation next-token accuracy\): unigram ([\d.]+), bigram ([\d.]+)"
)
EXPORTED = re.compile(r"exported epoch (\d+)")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(data_dir: str, flags: list[str], label: str) -> dict:
    job_dir = tempfile.mkdtemp(prefix="quality-job-")
    load_before = os.getloadavg()[0]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_composer",
            "train",
            "--data-dir",
            data_dir,
            "--job-dir",
            job_dir,
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    shutil.rmtree(job_dir, ignore_errors=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"train failed with status {proc.returncode}")
    epochs = [(int(e), float(loss), float(acc)) for e, loss, acc in EPOCH.findall(proc.stdout)]
    unigram, bigram = map(float, BASELINES.search(proc.stdout).groups())
    # the trainer's choice (the log rounds val_loss to 4 digits)
    exported = EXPORTED.search(proc.stdout)
    best = epochs[int(exported.group(1)) - 1] if exported else min(epochs, key=lambda row: row[1])
    return {
        "label": label,
        "flags": " ".join(flags),
        "val_accuracy": [round(acc, 4) for _, _, acc in epochs],
        "exported_epoch": best[0],
        "exported_val_accuracy": round(best[2], 4),
        "bigram": bigram,
        "unigram": unigram,
        "points_over_bigram": round(100 * (best[2] - bigram), 1),
        "wall_min": round(wall / 60, 2),
        "cpu_min": round(cpu / 60, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--label", default="")
    args = p.parse_args(argv[:split])
    print(json.dumps(run(args.data_dir, argv[split + 1 :], args.label)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
