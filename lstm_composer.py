"""The ``lstm-composer`` console script: one subcommand per job.

Each subcommand hands the rest of the command line to the ``main(argv)`` of the module that owns the
job, the same function ``python -m <module>`` calls, so every job has exactly one flag parser.
Modules are imported only when their subcommand runs: ``lstm-composer train`` never imports Beam.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("preprocessing.sample_data", "render the embedded default dataset to MIDI files"),
    "preprocess": ("preprocessing.pipeline", "MIDI folder -> vocabulary + windowed TFRecords (Apache Beam)"),
    "train": ("trainer.task", "train the LSTM on the records (tf.distribute, checkpoints, TensorBoard)"),
}


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
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
