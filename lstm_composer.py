"""The ``lstm-composer`` console script: one subcommand per job, and the quickstart that chains them.

Each job subcommand hands the rest of the command line to the ``main(argv)`` of the module that owns
the job, the same function ``python -m <module>`` calls, so every job has exactly one flag parser.
Modules are imported only when their subcommand runs: ``lstm-composer train`` never imports Beam.

This module lives outside both packages because ``quickstart`` runs the preprocessing pipeline
(Beam) and the trainer in one process, and neither package may import the other's side.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Callable, Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("lstm_composer:quickstart", "the whole chain on the embedded dataset, sized for a laptop CPU"),
    "sample-data": ("preprocessing.sample_data:main", "render the embedded default dataset to MIDI files"),
    "preprocess": ("preprocessing.pipeline:main", "MIDI folder -> vocabulary + windowed TFRecords (Apache Beam)"),
    "train": ("trainer.task:main", "train the LSTM on the records (tf.distribute, checkpoints, TensorBoard)"),
    "generate": ("trainer.generate:main", "compose MIDI with a trained model (plus piano roll and summary)"),
    "submit": ("trainer.submit:main",
               "run training on Vertex AI GPUs (1 GPU, 8 GPUs, several machines) or print a GKE Job manifest"),
}


def entry_point(name: str) -> Callable[[list[str]], int]:
    module_name, function = SUBCOMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), function)


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: lstm-composer <subcommand> [flags]   (lstm-composer <subcommand> --help for its flags)", ""]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"lstm-composer: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(entry_point(name)(rest) or 0)


# --------------------------------------------------------------------------- quickstart


def quickstart_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lstm-composer quickstart",
        description="Render the embedded dataset (if absent), preprocess it, train a small model and compose "
        "a piece: the whole chain, with settings that finish in minutes on a laptop CPU. Scale it up "
        "with the flags below.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--workdir", default="runs/quickstart", help="where records, job directory and music go")
    p.add_argument("--input", default=None, help="a MIDI folder instead of the embedded dataset")
    p.add_argument("--sequence-length", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--learning-rate", type=float, default=0.003,
                   help="higher than the reference's 0.001: the quickstart trains for minutes, not hours")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", choices=("fast", "reference"), default="fast")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--dense-units", type=int, default=128)
    p.add_argument("--length", type=int, default=200, help="tokens to compose")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--sample-every", type=int, default=2, help="TensorBoard audio/piano-roll sample every N epochs")
    p.add_argument("--seed", type=int, default=1)
    return p


class Stages:
    """A one-line-per-stage progress display: what runs, then how long it took."""

    def __init__(self, total: int):
        self.total, self.index, self.started = total, 0, time.perf_counter()

    def start(self, what: str) -> None:
        self.index += 1
        self._t = time.perf_counter()
        print(f"\n[{self.index}/{self.total}] {what} ...", flush=True)

    def done(self, detail: str = "") -> None:
        print(f"[{self.index}/{self.total}] done in {time.perf_counter() - self._t:.0f} s{detail}", flush=True)


def quickstart(argv: Sequence[str] | None = None) -> int:
    args = quickstart_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = args.workdir.rstrip("/")
    data_dir, job_dir = f"{work}/data", f"{work}/job"
    music = f"{work}/composition.mid"
    stages = Stages(4)

    from preprocessing import pipeline, sample_data

    stages.start("embedded dataset (music21 corpus rendered to MIDI; reused when already there)")
    midi_dir = args.input or sample_data.ensure_dataset()
    stages.done(f": {midi_dir}")

    stages.start("preprocessing with Apache Beam (DirectRunner, all cores)")
    try:
        outcome = pipeline.run_pipeline(
            ["--input", midi_dir, "--output", data_dir, "--sequence-length", str(args.sequence_length)]
        )
    except pipeline.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stages.done()

    from preprocessing.records import DataError
    from trainer import generate, task

    stages.start(f"training the '{args.model}' LSTM ({args.layers} x {args.units} units, {args.epochs} epochs)")
    train_argv = [
        "--data-dir", data_dir, "--job-dir", job_dir, "--epochs", str(args.epochs),
        "--steps-per-epoch", str(args.steps_per_epoch), "--batch-size", str(args.batch_size),
        "--model", args.model, "--units", str(args.units), "--layers", str(args.layers),
        "--embedding-dim", str(args.embedding_dim), "--dense-units", str(args.dense_units),
        "--learning-rate", str(args.learning_rate), "--dropout", str(args.dropout),
        "--sample-every", str(args.sample_every), "--seed", str(args.seed),
    ]
    try:
        metrics = task.train(task.build_parser().parse_args(train_argv))
    except (DataError, task.UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stages.done()

    stages.start(f"composing {args.length} tokens")
    code = generate.main(["--model-dir", f"{job_dir}/model", "--output", music, "--length", str(args.length),
                          "--temperature", str(args.temperature), "--seed", str(args.seed)])
    if code:
        return code
    stages.done()

    unigram = metrics.get("unigram_val_accuracy")
    bigram = metrics.get("bigram_val_accuracy")
    accuracy = metrics.get("val_accuracy")

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f} %"

    print(
        "\n".join([
            "",
            f"quickstart finished in {time.perf_counter() - stages.started:.0f} s",
            f"  records          {data_dir}  ({outcome.manifest.windows('train'):,} training windows)",
            f"  checkpoints      {job_dir}/checkpoints",
            f"  model            {job_dir}/model/model.keras",
            f"  TensorBoard logs {job_dir}/logs",
            f"  composition      {music}",
            f"  piano roll       {music[:-4]}.png",
            "",
            "validation next-token accuracy (does the network know more than note frequencies?)",
            f"  LSTM             {pct(accuracy)}",
            f"  bigram baseline  {pct(bigram)}",
            f"  unigram baseline {pct(unigram)}",
            "",
            f"watch it: tensorboard --logdir {job_dir}/logs",
        ])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
