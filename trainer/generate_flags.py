"""The generation job's flags and their checks. Imports no TensorFlow.

``lstm-composer generate`` (:mod:`trainer.generate`) parses and checks them before TensorFlow is
imported, so ``--help`` and a wrong flag answer at once and print nothing of TensorFlow's. The
quickstart applies its preset to this same parser and runs the same checks before its first stage.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

from preprocessing import quiet
from trainer.sampling import CONTEXTS

PROG = "lstm-composer generate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Compose MIDI with a trained model.", allow_abbrev=False
    )
    parser.add_argument(
        "--model-dir", required=True, help="a training job's model/ folder, local or gs://"
    )
    parser.add_argument(
        "--output",
        required=True,
        help="the .mid file to write (a .png, .json and with --wav a .wav go beside it)",
    )
    parser.add_argument(
        "--length", type=int, default=500, help="tokens to generate (default 500, as the reference)"
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="0 = argmax (the reference); default 1.0"
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample among the k likeliest tokens only"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus sampling: among the likeliest tokens that together hold probability p "
        "(0 < p <= 1)",
    )
    parser.add_argument(
        "--wav",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also write the piece as a .wav file (a simple synthesiser; default: no)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed: the same seed repeats a run exactly"
    )
    parser.add_argument(
        "--primer",
        default=None,
        help="a MIDI file whose last window starts the piece (default: a validation window)",
    )
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument(
        "--context",
        choices=CONTEXTS,
        default="carry",
        help="carry: LSTM state carried forward, one step per token (default, fast); "
        "window: the reference's sliding window from a zero state",
    )
    quiet.add_verbose_flag(parser)
    return parser


def problem(args: argparse.Namespace) -> str | None:
    """The first flag value that cannot work, as a sentence; None when all can."""
    if args.length < 1:
        return "--length must be at least 1"
    if args.num_samples < 1:
        return "--num-samples must be at least 1"
    return sampling_problem(args)


def sampling_problem(args: argparse.Namespace) -> str | None:
    """The first sampling flag (``--temperature``, ``--top-k``, ``--top-p``) that cannot work; the
    same checks for ``generate`` and ``evaluate``. ``nan`` and ``inf`` are refused by name: every
    comparison with ``nan`` is false, so a plain range check would let it through to the model."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        return f"--temperature must be a finite number >= 0, not {args.temperature}"
    if args.top_k is not None and args.top_k < 1:
        return "--top-k must be at least 1"
    if args.top_p is not None and not 0 < args.top_p <= 1:
        return f"--top-p must be in (0, 1], not {args.top_p}"
    return None


def parse_args(
    argv: Sequence[str] | None, defaults: Mapping[str, Any] | None = None
) -> argparse.Namespace:
    """The job's flags, checked; ``defaults`` (by destination name) replaces flag defaults
    (presets)."""
    parser = build_parser()
    parser.set_defaults(**(defaults or {}))
    args = parser.parse_args(argv)
    message = problem(args)
    if message:
        parser.error(message)
    return args


SAMPLING = ("context", "temperature", "top_k", "top_p", "seed")
"""The flags that say how a piece is drawn: ``generate``'s and ``evaluate``'s, the same names."""


def sampling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :meth:`trainer.composer.Composer.generate` that the flags set."""
    return {name: getattr(args, name) for name in SAMPLING}
