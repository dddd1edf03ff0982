"""Measure a trained model: ``lstm-composer evaluate`` / ``python -m trainer.evaluate``.

Two questions, one table on stdout and one JSON file (``--output``):

* **Does it predict better than counting?** Next-token accuracy, top-5 accuracy and perplexity of
  the model on the data folder's validation windows, beside the unigram and bigram baselines
  (:func:`trainer.baselines.baselines`) on the same windows, and the loss in bits per beat and per
  note (:mod:`trainer.bits_per_beat`), which compare across encodings. Named as the trainer's
  TensorBoard scalars (``val_accuracy``, ``val_top5_accuracy``, ``perplexity``,
  ``val_bits_per_beat``, ``bigram_val_accuracy``, …).
* **Does what it composes look like the music it learned from?** ``--samples`` seeded pieces of
  ``--length`` tokens, composed as ``generate`` composes (same primers, same sampling flags),
  against the validation pieces, put back together from the windows and cut to the same length: the
  measures of :mod:`trainer.measures` (named as the trainer's ``music/…`` scalars).

The data folder must be the one the model was trained on (same encoding, sequence length and
vocabulary), or the command stops with one line naming the difference. This module imports no
TensorFlow until a run starts, so ``--help`` and a wrong flag answer at once. Why each measure, and
how the validation pieces are made: ``docs/EVALUATION.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from preprocessing import quiet, records
from preprocessing.records import DataError
from trainer import measures
from trainer.baselines import EVERY_POSITION, baselines
from trainer.bits_per_beat import BITS_PER_BEAT, BITS_PER_NOTE, bits_figures, token_rate
from trainer.continuations import (
    DEFAULT_OPENING_BARS,
    compare_continuations,
    compose_continuations,
    continuation_plan,
)
from trainer.evaluate_table import table
from trainer.generate_flags import sampling_problem, sampling_settings
from trainer.sampling import CONTEXTS

PROG = "lstm-composer evaluate"
NEXT_TOKEN = (
    "val_accuracy",
    "val_top5_accuracy",
    "perplexity",
    "val_loss",
    "bigram_val_accuracy",
    "unigram_val_accuracy",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        description="Measure a trained model: its next-token accuracy beside the unigram and bigram baselines, and "
        "the music measures of pieces it composes beside the validation pieces'. Prints one table, writes it as JSON.",
    )
    p.add_argument(
        "--model-dir", required=True, help="a training job's model/ folder, local or gs://"
    )
    p.add_argument(
        "--data-dir", required=True, help="the preprocessing output the model was trained on"
    )
    p.add_argument(
        "--samples", type=int, default=8, help="pieces to compose and measure (default 8)"
    )
    p.add_argument(
        "--length",
        type=int,
        default=500,
        help="tokens per composed piece (default 500, as generate)",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="as generate's (default 1.0; 0 = argmax)"
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="as generate's: sample among the k likeliest tokens"
    )
    p.add_argument(
        "--top-p", type=float, default=None, help="as generate's: nucleus sampling, 0 < p <= 1"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        help="picks the primers and the draws (default 1: a run repeats)",
    )
    p.add_argument("--context", choices=CONTEXTS, default="carry", help="as generate's")
    p.add_argument(
        "--continue",
        dest="continue_pieces",
        action="store_true",
        help="also continue each validation piece (at most --samples) from its opening, as long "
        "as its real continuation (at most --length tokens), and compare the two piece by piece",
    )
    p.add_argument(
        "--opening-bars",
        type=int,
        default=DEFAULT_OPENING_BARS,
        help=f"with --continue: the bars of each piece that prime the model (default "
        f"{DEFAULT_OPENING_BARS}, of 4 quarter notes)",
    )
    p.add_argument(
        "--windows",
        type=int,
        default=200_000,
        help="at most this many validation windows are scored, and training windows counted for "
        "the baselines (default 200,000, as train's --baseline-windows)",
    )
    p.add_argument(
        "--output",
        default="evaluation.json",
        help="the JSON file to write (default evaluation.json)",
    )
    quiet.add_verbose_flag(p)
    return p


def parse_args(
    argv: Sequence[str] | None, defaults: Mapping[str, Any] | None = None
) -> argparse.Namespace:
    parser = build_parser()
    parser.set_defaults(**(defaults or {}))
    args = parser.parse_args(argv)
    for flag, value in (
        ("--samples", args.samples),
        ("--length", args.length),
        ("--windows", args.windows),
        ("--opening-bars", args.opening_bars),
    ):
        if value < 1:
            parser.error(f"{flag} must be at least 1")
    problem = sampling_problem(args)
    if problem:
        parser.error(problem)
    return args


# --------------------------------------------------------------------------- pure parts


def differences(model: records.Manifest, data: records.Manifest) -> list[str]:
    """What makes a data folder's windows mean something else than the model's, or its validation
    pieces other pieces than the ones the model was validated on (empty: the same)."""
    found = [
        f"{name} {getattr(model, name)!r} in the model, {getattr(data, name)!r} in the data"
        for name in ("encoding", "sequence_length", "vocab_size", "vocab_hash")
        if getattr(model, name) != getattr(data, name)
    ]
    held_out = model.validation_pieces_hash, data.validation_pieces_hash
    if all(held_out) and held_out[0] != held_out[1]:  # checked where both folders record it
        found.append(
            f"other validation pieces: the model was validated on pieces hashing to {held_out[0]} "
            f"(--validation-fraction {model.validation_fraction:g}, run {model.run_id}), this "
            f"folder holds out {held_out[1]} (--validation-fraction {data.validation_fraction:g}, "
            f"run {data.run_id}), so it may score pieces the model trained on"
        )
    return found


def score_sums(probabilities, targets, top_k: int = 5, epsilon: float = 1e-7):
    """``[cross-entropy sum, hits, top-k hits, rows]`` of probability rows against targets, as the
    trainer computes them (Keras' cross-entropy: rows renormalised, clipped to ``[epsilon, 1 -
    epsilon]``; a target is in the top k when fewer than k ids are likelier)."""
    import numpy as np

    p = np.asarray(probabilities, np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    t = np.asarray(targets, np.int64)
    chosen = p[np.arange(len(t)), t]
    likelier = (p > chosen[:, None]).sum(axis=1)
    return np.array(
        [
            float(np.sum(-np.log(np.clip(chosen, epsilon, 1 - epsilon)))),
            float(np.sum(p.argmax(axis=1) == t)),
            float(np.sum(likelier < min(top_k, p.shape[1]))),
            float(len(t)),
        ]
    )


def scores_from_sums(sums, suffix: str = "") -> dict[str, float]:
    """Accuracy, top-5 accuracy, mean cross-entropy and perplexity from :func:`score_sums`."""
    loss = float(sums[0] / sums[3])
    return {
        "val_accuracy" + suffix: float(sums[1] / sums[3]),
        "val_top5_accuracy" + suffix: float(sums[2] / sums[3]),
        "val_loss" + suffix: loss,
        "perplexity" + suffix: float(math.exp(min(loss, 700.0))),
    }


def next_token_scores(probabilities, targets, top_k: int = 5) -> dict[str, float]:
    """Accuracy, top-k accuracy, mean cross-entropy and perplexity of probability rows against
    targets."""
    return scores_from_sums(score_sums(probabilities, targets, top_k))


# --------------------------------------------------------------------------- the run


def model_scores(model, inputs, targets, batch: int = 512) -> dict[str, float]:
    """The model's next-token scores on the windows, in batches: at the last position, and for a
    model trained with ``--objective sequence`` over every position too (``…_every_position``)."""
    import numpy as np
    import tensorflow as tf

    from trainer import model as model_lib

    every = model_lib.every_position(model)
    last_sums, every_sums = np.zeros(4), np.zeros(4)
    for i in range(0, len(inputs), batch):
        rows = np.asarray(model(tf.constant(inputs[i : i + batch]), training=False), np.float64)
        last_sums += score_sums(model_lib.last_position(rows), targets[i : i + batch])
        if every:
            window = np.concatenate([inputs[i : i + batch], targets[i : i + batch, None]], axis=1)
            following = window[:, 1:].reshape(-1)
            every_sums += score_sums(rows.reshape(-1, rows.shape[-1]), following)
    scores = scores_from_sums(last_sums)
    if every:
        scores.update(scores_from_sums(every_sums, EVERY_POSITION))
    return scores


def check_output(path: str) -> None:
    """Make ``--output``'s folder now, and refuse a folder as the file, before any work is done."""
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        raise DataError(f"--output {path} is a folder; give the JSON file's name")
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    try:
        if parent and not tf.io.gfile.exists(parent):
            tf.io.gfile.makedirs(parent)
    except tf.errors.OpError as exc:
        raise DataError(f"--output {path}: cannot make its folder: {exc.message}") from None


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Score the model, compose and measure; returns the report (what the JSON file holds)."""
    from preprocessing.reader import encoding_of
    from trainer import data as data_lib
    from trainer.composer import Composer
    from trainer.export import load_bundle

    measures.muspy_module()  # a missing extra or an unwritable --output is reported before the work
    check_output(args.output)
    bundle = load_bundle(args.model_dir)
    data = data_lib.load(args.data_dir)
    found = differences(bundle.manifest, data.manifest)
    if found:
        raise DataError(
            f"{args.data_dir} is not the data {args.model_dir} was trained on: {'; '.join(found)}"
        )
    encoding = encoding_of(args.model_dir, bundle.manifest, remedy=None)
    pieces = data_lib.pieces(data, records.VALIDATION, args.windows)
    piece_tokens = [[data.vocab[i] for i in piece] for piece in pieces]
    plan = None
    if args.continue_pieces:  # refused now, before any work, when no piece is long enough
        plan = continuation_plan(
            piece_tokens, encoding, args.opening_bars, args.length, args.samples
        )
    next_token = next_token_report(args, bundle, data)
    rate = token_rate(piece_tokens, encoding)
    next_token.update(bits_figures(next_token["val_loss"], rate))
    composer = Composer(bundle.model, bundle.sequence_length, encoding.grammar(bundle.vocab))
    report = {
        "model_dir": args.model_dir,
        "data_dir": args.data_dir,
        "encoding": encoding.name,
        "settings": {
            key: getattr(args, key)
            for key in ("samples", "length", "temperature", "top_k", "top_p", "seed", "context")
        },
        "next_token": {
            key: next_token.get(key)
            for key in (
                "validation_windows",
                *NEXT_TOKEN,
                *(key + EVERY_POSITION for key in NEXT_TOKEN if key + EVERY_POSITION in next_token),
                BITS_PER_BEAT,
                BITS_PER_NOTE,
            )
        },
        "validation_rate": rate.as_dict(),
        "music": unprimed_music(args, bundle, encoding, composer, piece_tokens),
    }
    if plan is not None:
        report["continuations"] = continuations_report(args, plan, composer, bundle, encoding)
    return report


def next_token_report(args, bundle, data) -> dict[str, Any]:
    """The model's next-token scores on the validation windows, beside the baselines'."""
    from trainer import data as data_lib

    inputs, targets = data_lib.numpy_windows(data, records.VALIDATION, args.windows)
    if len(targets) == 0:
        raise DataError(
            f"{args.data_dir} has no validation windows to evaluate on: preprocess with a "
            "--validation-fraction above 0"
        )
    scores = model_scores(bundle.model, inputs, targets)
    return {
        "validation_windows": int(len(targets)),
        **scores,
        **baselines(
            data_lib.numpy_windows(data, records.TRAIN, args.windows),
            (inputs, targets),
            data.vocab_size,
            every_position="val_accuracy" + EVERY_POSITION in scores,
        ),
    }


def unprimed_music(args, bundle, encoding, composer, piece_tokens) -> dict[str, Any]:
    """``--samples`` pieces composed from the model's primers against validation excerpts of the
    same length: the music measures of both sets."""
    from trainer.compositions import GenerateError, choose_primers

    try:
        primers = choose_primers(bundle, None, args.samples, args.seed, encoding)
    except GenerateError as exc:
        raise DataError(str(exc)) from None
    ids = composer.generate(primers, args.length, **sampling_settings(args))
    composed = composer.pieces(primers, ids, bundle.vocab)
    reference = measures.excerpts(piece_tokens, args.length)
    return {
        "generated_pieces": len(composed),
        "validation_pieces": len(piece_tokens),
        "validation_excerpts": len(reference),
        "validation_excerpt_tokens": [min(map(len, reference)), max(map(len, reference))],
        **measures.compare(composed, reference, encoding),
    }


def continuations_report(args, plan, composer, bundle, encoding) -> dict[str, Any]:
    """``--continue``: each planned piece continued from its opening, against its real
    continuation."""
    items, too_short = plan
    composed = compose_continuations(composer, items, bundle.vocab, sampling_settings(args))
    sizes = [len(item.real) for item in items]
    return {
        "opening_bars": args.opening_bars,
        "too_short": too_short,
        "continuation_tokens": [min(sizes), max(sizes)],
        **compare_continuations(items, composed, encoding, args.opening_bars),
    }


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse printed usage and one "error:" line (or --help)
        return int(exc.code or 0)
    quiet.import_tensorflow()
    try:
        report = evaluate(args)
        from trainer.compositions import write_bytes

        write_bytes(args.output, (json.dumps(report, indent=1) + "\n").encode())
    except (DataError, measures.MeasureError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(table(report))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
