"""The ``lstm-composer`` console script: one subcommand per job, and the quickstart that chains
them.

Each job subcommand hands the rest of the command line to the ``main(argv)`` of the module that owns
the job's flags, so every job has exactly one flag parser. Modules are imported only when their
subcommand runs: ``lstm-composer train`` never imports Beam, and no ``--help`` imports TensorFlow.

This package lives outside ``preprocessing`` and ``trainer`` because the quickstart
(:mod:`lstm_composer.quickstart`) runs the preprocessing pipeline (Beam) and the trainer in one
process, and neither package may import the other's side.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from preprocessing import quiet  # the standard library only: every subcommand shares its --verbose

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": (
        "lstm_composer.quickstart:main",
        "the whole chain on the embedded dataset, sized for a laptop CPU",
    ),
    "sample-data": (
        "preprocessing.sample_data:main",
        "render the embedded default dataset to MIDI files",
    ),
    "preprocess": (
        "preprocessing.pipeline:main",
        "MIDI folder -> vocabulary + windowed TFRecords (Apache Beam)",
    ),
    "train": (
        "trainer.task:main",
        "train the LSTM on the records (tf.distribute, checkpoints, TensorBoard)",
    ),
    "generate": (
        "trainer.generate:main",
        "compose MIDI with a trained model (plus piano roll and summary)",
    ),
    "evaluate": (
        "trainer.evaluate:main",
        "measure a trained model: next-token accuracy against baselines, music measures of its pieces",
    ),
    "submit": (
        "cloud.cli:main",
        "run training on Vertex AI GPUs (1 GPU, 8 GPUs, several machines) or print a GKE Job manifest",
    ),
}


def entry_point(name: str) -> Callable[[list[str]], int]:
    module_name, function = SUBCOMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), function)


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: lstm-composer <subcommand> [flags]   (lstm-composer <subcommand> --help for its flags)",
        "",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += [
        "",
        f"Every subcommand takes --verbose (or {quiet.VERBOSE_ENV}=1): also show TensorFlow's and Beam's "
        "own log lines.",
    ]
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
