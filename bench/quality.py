"""What a training setting buys on real data: validation accuracy against the bigram, minutes, CPU
time.

``python bench/quality.py --data-dir DIR [--label NAME] -- TRAIN FLAGS...`` runs
``lstm-composer train`` in a child process (a fresh job directory each time) and prints one JSON
line: the setting, every epoch's validation accuracy, the exported (best by validation loss) epoch
and its accuracy, the unigram and bigram baselines, wall and CPU seconds of the child, and the load
average before and after (the machine may be shared: wall time is inflated by load, CPU time much
less so). ``docs/PERFORMANCE.md`` records the table these lines make for the quickstart's dataset.

``python bench/quality.py --grid ENCODING [--strides 1,2,4] [--objectives last,sequence]`` compares
``train --objective`` × ``preprocess --stride`` (in multiples of the sequence length) at equal CPU
time on the embedded dataset, with the quickstart's preset for the encoding otherwise: each stride
is preprocessed once (its stored bytes per token measured), each setting's CPU seconds per step and
per epoch's validation measured from three short runs, and each setting then trains for the steps
that, with its validation, cost ``--cpu-budget`` seconds, by default what the preset's own setting
(its objective, stride and steps) costs. It prints a JSON line per setting, then one JSON object
of every figure (the last line).
"""

from __future__ import annotations

import argparse
import json
import math
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


def run(data_dir: str, flags: list[str], label: str, keep_job: str | None = None) -> dict:
    """One ``train`` run in a child process (into ``keep_job``, kept, or a temporary job
    directory); its figures."""
    job_dir = keep_job or tempfile.mkdtemp(prefix="quality-job-")
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
    if not keep_job:
        shutil.rmtree(job_dir, ignore_errors=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"train failed with status {proc.returncode}")
    epochs = [(int(e), float(loss), float(acc)) for e, loss, acc in EPOCH.findall(proc.stdout)]
    found = BASELINES.search(proc.stdout)
    unigram, bigram = map(float, found.groups()) if found else (math.nan, math.nan)
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
        "cpu_s": round(cpu, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------- the grid


def preset_flags(values: dict) -> list[str]:
    """A job's preset as command-line flags (``True`` is a bare flag)."""
    flags: list[str] = []
    for dest, value in values.items():
        flag = "--" + dest.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def preprocess(encoding: str, flags: list[str], stride: int, out: str) -> dict:
    """The embedded dataset preprocessed with the preset's flags at ``stride``; its stored bytes."""
    if not os.path.exists(os.path.join(out, "manifest.json")):
        proc = subprocess.run(
            [sys.executable, "-m", "lstm_composer", "preprocess", "--output", out,
             "--encoding", encoding, *flags, "--stride", str(stride)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"preprocess failed with status {proc.returncode}")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    stored = sum(
        shard["size"] for split in ("train", "validation") for shard in manifest[f"{split}_shards"]
    )
    return {
        "stride": stride,
        "tokens": manifest["counts"]["tokens"],
        "stored_bytes": stored,
        "bytes_per_token": round(stored / manifest["counts"]["tokens"], 3),
    }


def cpu_costs(data_dir: str, flags: list[str]) -> tuple[float, float]:
    """CPU seconds of one training step and of one epoch's validation for this setting, from three
    short runs: 20 and 80 steps with one validation step (their difference over 60 steps: start-up
    and data checks cancel), and 20 steps with the setting's own validation (its difference with
    the first: the validation, which for ``sequence`` scores every position)."""
    quiet = ["--baseline-windows", "0", "--sample-every", "0"]
    runs = {}
    for steps, validation in ((20, ["--validation-steps", "1"]), (80, ["--validation-steps", "1"]),
                              (20, [])):  # fmt: skip
        fixed = [*flags, "--epochs", "1", "--steps-per-epoch", str(steps), *quiet, *validation]
        runs[(steps, bool(validation))] = run(data_dir, fixed, f"calibrate {steps}")["cpu_s"]
    per_step = max(1e-3, (runs[(80, True)] - runs[(20, True)]) / 60)
    return per_step, max(0.0, runs[(20, False)] - runs[(20, True)])


def grid(
    encoding: str, strides: list[int], objectives: list[str], cpu_budget: float | None = None
) -> dict:
    """Every objective x stride trained for the same CPU time: ``cpu_budget`` seconds, or what the
    preset's own setting (its objective, stride and steps) costs on this machine."""
    from lstm_composer.quickstart import preset_for

    preset = preset_for(encoding)
    train = dict(preset["train"])
    epochs, preset_steps = int(train.pop("epochs")), int(train.pop("steps_per_epoch"))
    preset_objective = train.pop("objective", "last")
    length = int(preset["preprocess"]["sequence_length"])
    preset_stride = int(preset["preprocess"].get("stride", length))
    prep_flags = preset_flags({k: v for k, v in preset["preprocess"].items() if k != "stride"})
    work = tempfile.mkdtemp(prefix=f"quality-grid-{encoding}-")
    data = {}
    wanted = [multiple * length for multiple in strides]
    for stride in wanted + ([] if cpu_budget or preset_stride in wanted else [preset_stride]):
        data[stride] = preprocess(encoding, prep_flags, stride, os.path.join(work, f"s{stride}"))
        print(json.dumps({"preprocessed": encoding, **data[stride]}), flush=True)
    base = preset_flags({**train, "sample_every": 0})
    settings = [(objective, stride) for objective in objectives for stride in wanted]
    calibrated = settings + ([] if cpu_budget else [(preset_objective, preset_stride)])
    cost = {
        (objective, stride): cpu_costs(
            os.path.join(work, f"s{stride}"), [*base, "--objective", objective]
        )
        for objective, stride in dict.fromkeys(calibrated)
    }
    if not cpu_budget:
        step_s, validation_s = cost[(preset_objective, preset_stride)]
        cpu_budget = preset_steps * epochs * step_s + epochs * validation_s
    budget = cpu_budget
    figures: dict = {"encoding": encoding, "sequence_length": length, "cpu_budget_s": round(budget)}
    for objective, stride in settings:
        step_s, validation_s = cost[(objective, stride)]
        steps = max(epochs, round((budget - epochs * validation_s) / step_s / epochs) * epochs)
        flags = [*base, "--objective", objective, "--epochs", str(epochs),
                 "--steps-per-epoch", str(steps // epochs)]  # fmt: skip
        label = f"{encoding} {objective} stride {stride}"
        row = run(os.path.join(work, f"s{stride}"), flags, label)
        row.update(
            steps=steps,
            cpu_s_per_step=round(step_s, 4),
            cpu_s_per_validation=round(validation_s, 1),
            **data[stride],
        )
        print(json.dumps(row), flush=True)
        key = f"{objective}_s{stride}"
        figures[f"{key}_val_accuracy"] = row["exported_val_accuracy"]
        figures[f"{key}_points_over_bigram"] = row["points_over_bigram"]
        figures[f"{key}_cpu_min"] = row["cpu_min"]
        figures[f"{key}_steps"] = steps
        figures[f"s{stride}_bytes_per_token"] = data[stride]["bytes_per_token"]
    figures["bigram"] = row["bigram"]
    shutil.rmtree(work, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--label", default="")
    p.add_argument("--grid", choices=("reference", "remi"), help="objective x stride, equal CPU")
    p.add_argument("--strides", default="1,2,4", help="grid strides, in sequence lengths")
    p.add_argument("--objectives", default="last,sequence")
    p.add_argument(
        "--cpu-budget", type=float, help="grid: CPU seconds per setting (default: the preset's)"
    )
    args = p.parse_args(argv[:split])
    if args.grid:
        strides = [int(m) for m in args.strides.split(",")]
        figures = grid(args.grid, strides, args.objectives.split(","), args.cpu_budget)
        print(json.dumps(figures), flush=True)
        return 0
    if not args.data_dir:
        p.error("--data-dir (or --grid) is required")
    print(json.dumps(run(args.data_dir, argv[split + 1 :], args.label)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
