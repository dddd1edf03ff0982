"""The training job's flags and their validators. Imports no TensorFlow.

``lstm-composer train --help``, ``lstm-composer submit`` (which checks the flags after ``--`` before
it sends a job) and the quickstart (which applies its preset to this parser) all read the trainer's
flags from here, so none of them pays TensorFlow's start-up for a parse.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

from preprocessing import quiet
from trainer.model import MODELS, OBJECTIVES
from trainer.schedule import SCHEDULES

PROG = "lstm-composer train"
DISTRIBUTE = ("auto", "none", "mirrored", "multiworker")
VERIFY_SHARDS = ("quick", "full")


class UsageError(ValueError):
    """A flag or environment that cannot work; the message says why."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, not {text}")
    return value


def dropout_rate(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train the LSTM on a preprocessing output (tf.distribute, checkpoints, TensorBoard).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        required=True,
        help="the preprocessing pipeline's output (local, gs://, /gcs/...)",
    )
    p.add_argument(
        "--job-dir",
        default=None,
        help="root of every output (local, gs://); AIP_* variables override parts",
    )
    add_optimisation_flags(p)
    add_network_flags(p)
    add_job_flags(p)
    quiet.add_verbose_flag(p)
    return p


def add_optimisation_flags(p: argparse.ArgumentParser) -> None:
    """How long and how fast it learns: epochs, batch, learning rate and its schedule, steps,
    seed."""
    p.add_argument("--epochs", type=positive_int, default=100)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="GLOBAL batch size (split over all replicas)",
    )
    p.add_argument("--learning-rate", type=positive_float, default=0.001)
    p.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default="constant",
        help="constant: --learning-rate throughout; cosine: a linear warm-up over the first 5 %% of "
        "the steps, then half a cosine down to 5 %% of --learning-rate at the last step",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--shuffle-buffer", type=positive_int, default=10_000)
    p.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        default=None,
        help="training steps per epoch (default: one pass over the training windows; the stream "
        "repeats, so more than a pass reads them again, drawn anew)",
    )
    p.add_argument(
        "--validation-steps",
        type=positive_int,
        default=None,
        help="cap on validation steps (default: one pass over the validation windows)",
    )


def add_network_flags(p: argparse.ArgumentParser) -> None:
    """The network: which model and its sizes (a resumed job must keep them)."""
    p.add_argument("--model", choices=MODELS, default="fast")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="last",
        help="last: predict the token after each window, the notebook's objective (and the only one "
        "of --model reference); sequence: predict the token after every position of the window "
        "and average the loss over them (fast model; validation then reports both)",
    )
    p.add_argument("--units", type=positive_int, default=512, help="LSTM units per layer")
    p.add_argument("--layers", type=positive_int, default=3, help="number of LSTM layers")
    p.add_argument("--dense-units", type=positive_int, default=256)
    p.add_argument("--embedding-dim", type=positive_int, default=64, help="fast model only")
    p.add_argument("--dropout", type=dropout_rate, default=0.3)


def add_job_flags(p: argparse.ArgumentParser) -> None:
    """What the job does around the training: baselines, samples, checks, distribution, reruns."""
    p.add_argument(
        "--baseline-windows",
        type=int,
        default=200_000,
        help="training windows counted for the unigram/bigram baselines (0: skip them)",
    )
    p.add_argument(
        "--sample-every",
        type=int,
        default=5,
        help="every N epochs, log a short greedy sample (piano roll, audio, tokens) to TensorBoard; 0: never",
    )
    p.add_argument(
        "--verify-shards",
        choices=VERIFY_SHARDS,
        default="quick",
        help="before the first step, check every shard's size and content against the manifest: "
        "quick hashes its first and last 64 KiB, full every byte",
    )
    p.add_argument(
        "--distribute",
        choices=DISTRIBUTE,
        default="auto",
        help="auto: MultiWorkerMirrored when TF_CONFIG/CLUSTER_SPEC name several workers, else Mirrored",
    )
    p.add_argument(
        "--replace-run",
        action="store_true",
        help="when --job-dir holds the backup of a different run (other data or model flags), move that "
        "run's files into previous-run-TIME/ subfolders and start at epoch 1 instead of refusing; "
        "a backup of this same run is resumed as always",
    )


def parse_args(
    argv: Sequence[str] | None, defaults: Mapping[str, Any] | None = None
) -> argparse.Namespace:
    """The job's flags from ``argv``; ``defaults`` (by destination name) replaces flag defaults,
    which is how a preset such as the quickstart's sets values that every flag can still change."""
    parser = build_parser()
    parser.set_defaults(**(defaults or {}))
    args = parser.parse_args(argv)
    if args.model == "reference" and args.objective != "last":
        parser.error(
            f"--model reference predicts the token after the window only, as the notebook's: "
            f"--objective {args.objective} needs --model fast"
        )
    return args
