"""Benchmark: what Python's garbage collector costs music21's parse, with and without Beam loaded.

The pipeline's workers used to parse in processes that hold Beam, protobuf and gRPC besides music21,
a few hundred thousand long-lived objects that every full collection walks again;
``ParseMidi.setup`` therefore calls ``preprocessing.direct_runner.freeze_long_lived_objects()``
(``gc.freeze()``) in a worker. Since every file parses under a time budget, the parse runs in a
child process of the worker (``preprocessing.budgeted_child``) that imports music21 alone and then
freezes it. This benchmark times the reference loop (``bench/preprocess.py``'s, same music21 calls)
over every ``--every``-th file of the embedded dataset in four fresh processes, one after another in
each round:

* ``lean``: music21 only, as the reference notebook runs (the baseline of ``bench/preprocess.py``);
* ``beam``: Beam and the pipeline module imported, as in a worker before the freeze;
* ``beam_frozen``: the same, then ``freeze_long_lived_objects()``, as in a worker before the budget;
* ``child``: music21 only, then ``gc.collect()`` and ``gc.freeze()``, as in a parse child now.

Prints each one's time and share spent in the collector (measured with ``gc.callbacks``) and the
ratios of their times to ``lean`` (median over rounds); the last line is a JSON object of the
figures.

    python bench/parse_gc.py [--every 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/preprocess.py's loop

CONFIGS = ("lean", "beam", "beam_frozen", "child")


def child(config: str, input_dir: str, every: int) -> dict:
    """Run in the fresh process: set up ``config``, then time the reference loop."""
    from preprocess import midi_paths, reference_loop

    if config in ("beam", "beam_frozen"):
        from preprocessing import (  # noqa: F401 - what a worker process imports
            direct_runner,
            pipeline,
        )

        if config == "beam_frozen":
            direct_runner.freeze_long_lived_objects()
    if config == "child":  # what preprocessing.budgeted_child.serve does before its first call
        import gc

        from preprocessing.encodings import (
            reference,  # noqa: F401 - the parse function's module: music21
        )

        gc.collect()
        gc.freeze()
    seconds, tokens, gc_seconds, _ = reference_loop(midi_paths(input_dir)[::every])
    return {"seconds": seconds, "tokens": tokens, "gc_seconds": gc_seconds}


def run_child(config: str, input_dir: str, every: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--input",
            input_dir,
            "--every",
            str(every),
            "--child",
            config,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="MIDI folder (default: the embedded dataset)")
    parser.add_argument("--every", type=int, default=3, help="time every N-th file (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; ratios are their medians")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.every < 1 or args.repeats < 1:
        parser.error("--every and --repeats must be at least 1")

    if args.child:
        print(json.dumps(child(args.child, args.input, args.every)))
        return 0

    from preprocess import midi_paths

    from preprocessing import sample_data

    input_dir = args.input or sample_data.ensure_dataset()
    rounds: list[dict[str, dict]] = []
    for round_index in range(args.repeats):
        turn = round_index % len(CONFIGS)
        order = CONFIGS[turn:] + CONFIGS[:turn]  # rotate who goes first
        timed = {config: run_child(config, input_dir, args.every) for config in order}
        if len({timed[c]["tokens"] for c in CONFIGS}) != 1:
            print("error: the configurations read different music", file=sys.stderr)
            return 1
        rounds.append(timed)
        print(
            f"round {round_index + 1}: "
            + ", ".join(
                f"{c} {timed[c]['seconds']:.1f} s ({100 * timed[c]['gc_seconds'] / timed[c]['seconds']:.0f} % in gc)"
                for c in CONFIGS
            )
        )

    figures: dict[str, float | int] = {
        "files_timed": len(midi_paths(input_dir)[:: args.every]),
        "rounds": args.repeats,
    }
    for config in CONFIGS:
        figures[f"{config}_s"] = round(min(r[config]["seconds"] for r in rounds), 2)
        figures[f"{config}_gc_share"] = round(
            statistics.median(r[config]["gc_seconds"] / r[config]["seconds"] for r in rounds), 3
        )
    for config in CONFIGS[1:]:
        figures[f"{config}_vs_lean"] = round(
            statistics.median(r[config]["seconds"] / r["lean"]["seconds"] for r in rounds), 3
        )
    for config in CONFIGS:
        print(
            f"{config:12} {figures[f'{config}_s']:7.1f} s, {100 * figures[f'{config}_gc_share']:4.1f} % in the "
            "garbage collector"
            + (f", {figures[f'{config}_vs_lean']:.2f}x the lean time" if config != "lean" else "")
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
