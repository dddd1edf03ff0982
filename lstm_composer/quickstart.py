"""``lstm-composer quickstart``: the whole chain on the embedded dataset, sized for a laptop CPU.

Render the embedded dataset (if absent), preprocess it, train a small model and compose a piece,
each job with its own parser and checks and the quickstart's :data:`PRESET` as their defaults; every
flag of every job is accepted and goes to the jobs that know it, and everything is checked before
the first stage. The report ends with the exported model's accuracy beside the baselines'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from preprocessing import quiet
from preprocessing.messages import interrupted
from trainer.baselines import EVERY_POSITION

PROG = "lstm-composer quickstart"

PRESET: dict[str, dict[str, Any]] = {
    # Training windows moved by a shift drawn from -3..+3 semitones as they are read (never the
    # validation windows), so that validation loss still falls at the last step.
    "preprocess": {"sequence_length": 32, "transpose": 3},
    # Every position of a window trains (bench/quality.py: above the last position alone at equal
    # CPU time); a step costs about twice one of the last position, hence 1,320 steps, which fit
    # the wall time of the 3,000 steps of the last position (docs/PERFORMANCE.md). Fixed steps, not
    # a clock, so a run repeats on any machine; a high rate decayed along a cosine, and batches of
    # 128 windows.
    "train": {
        "objective": "sequence",
        "epochs": 12,
        "steps_per_epoch": 110,
        "batch_size": 128,
        "learning_rate": 0.005,
        "lr_schedule": "cosine",
        "dropout": 0.1,
        "units": 128,
        "layers": 2,
        "embedding_dim": 32,
        "dense_units": 128,
        "sample_every": 4,
        "seed": 1,
    },
    # Nucleus sampling at full temperature: top-p 0.95 drops the long tail that makes temperature 1
    # alone noisy, without the loops of a lower temperature.
    "generate": {"length": 200, "temperature": 1.0, "top_p": 0.95, "seed": 1, "wav": True},
}
"""The quickstart's defaults for each job's own flags, sized to finish in minutes on a laptop CPU.
What each setting bought, measured: docs/PERFORMANCE.md ("What the quickstart's model learns"; the
objective and the stride: "Every token stored once, every token learned from")."""

ENCODING_PRESET: dict[str, dict[str, dict[str, Any]]] = {
    "remi": {
        "preprocess": {"sequence_length": 64, "transpose": 0, "stride": 256},
        "train": {"epochs": 6, "steps_per_epoch": 200, "batch_size": 64, "validation_steps": 60},
        "generate": {"length": 600},
    },
}
"""Merged over :data:`PRESET` for ``--encoding``: a REMI piece is several times as many
tokens as the reference's (a note is a ``Pitch`` and a ``Duration``, time is ``Bar``/``Position``
tokens), so a window of 64 tokens is a bar or two, and 600 tokens compose about as much music as the
reference's 200. No transposition: REMI's windows are already more than the preset's steps read.
Stored windows of 64 + 256 tokens at stride 256 (1.4 bytes a token), the best of the strides
measured (51 % at the last position against 45 % for the last-position objective at equal CPU
time, docs/PERFORMANCE.md). Windows of 64 tokens cost about twice those of 32 a step, so REMI
trains 1,200 steps on batches of 64 (the cosine schedule follows the shorter job), and validates on
60 batches each epoch."""


def preset_for(encoding: str) -> dict[str, dict[str, Any]]:
    """:data:`PRESET` with the encoding's own values merged over it."""
    extra = ENCODING_PRESET.get(encoding, {})
    return {job: {**values, **extra.get(job, {})} for job, values in PRESET.items()}


FROM_WORKDIR = ("--output", "--data-dir", "--job-dir", "--model-dir")
"""Flags the quickstart sets itself from ``--workdir``, to chain the jobs."""


def describe_preset(preset: dict[str, dict[str, Any]]) -> str:
    return "; ".join(
        f"{job}: "
        + ", ".join(f"--{dest.replace('_', '-')} {value}" for dest, value in values.items())
        for job, values in preset.items()
    )


def quickstart_parser() -> argparse.ArgumentParser:
    preset = describe_preset(PRESET) + "".join(
        f"; with --encoding {name}: {describe_preset(extra)}"
        for name, extra in ENCODING_PRESET.items()
    )
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Render the embedded dataset (if absent), preprocess it, train a small model and compose "
        "a piece: the whole chain, with settings that finish in minutes on a laptop CPU. Every flag of "
        "`lstm-composer preprocess`, `train` and `generate` is accepted and goes to the jobs that know it "
        "(--seed to both train and generate), except the folders, which come from --workdir.",
        epilog=f"The preset (defaults that differ from each job's own): {preset}.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--workdir", default="runs/quickstart", help="where records, job directory and music go"
    )
    quiet.add_verbose_flag(p)
    return p


def route_flags(
    argv: Sequence[str], parsers: dict[str, argparse.ArgumentParser]
) -> dict[str, list[str]]:
    """Each flag of ``argv`` (with its value) for every job whose parser knows its exact name.

    argparse has no public list of a parser's options; ``_actions`` has been where they live since
    Python 3.2. Raises :class:`ValueError` for a flag that no job knows.
    """
    takes_value = {
        job: {
            name: action.nargs != 0 for action in parser._actions for name in action.option_strings
        }  # noqa: SLF001
        for job, parser in parsers.items()
    }
    routed: dict[str, list[str]] = {job: [] for job in parsers}
    index = 0
    while index < len(argv):
        token = argv[index]
        name, has_value, _ = token.partition("=")
        owners = [job for job, table in takes_value.items() if name in table]
        if not owners:
            raise ValueError(
                f"unrecognized arguments: {token} (not a flag of {', '.join(parsers)})"
            )
        words = [token]
        if not has_value and takes_value[owners[0]][name] and index + 1 < len(argv):
            index += 1
            words.append(argv[index])
        for job in owners:
            routed[job] += words
        index += 1
    return routed


class Stages:
    """A one-line-per-stage progress display: what runs, then how long it took."""

    def __init__(self, total: int):
        self.total = total
        self.index = 0
        self.what = "before the first stage"
        self.started = time.perf_counter()

    def start(self, what: str) -> None:
        self.index += 1
        self.what = what
        self._t = time.perf_counter()
        print(f"\n[{self.index}/{self.total}] {what} ...", flush=True)

    def done(self, detail: str = "") -> None:
        print(
            f"[{self.index}/{self.total}] done in {time.perf_counter() - self._t:.0f} s{detail}",
            flush=True,
        )


class Jobs(NamedTuple):
    """The quickstart's three jobs, each with its own flags parsed and checked."""

    workdir: str
    preprocess: Any  # preprocessing.options.PreprocessOptions
    beam_args: list[str]
    train: argparse.Namespace
    generate: argparse.Namespace


def job_flags(parse: Callable[..., Any], *args: Any) -> Any:
    """Run a job's own ``parse_args`` (its parser, the preset, its checks) and turn the job's
    argparse error into a :class:`ValueError` holding the message alone, for the quickstart to
    say in its name."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parse(*args)
    except SystemExit:
        errors = [
            line.split(": error: ", 1)[1]
            for line in stderr.getvalue().splitlines()
            if ": error: " in line
        ]
        raise ValueError(
            errors[-1] if errors else stderr.getvalue().strip() or "invalid flags"
        ) from None


def plan_jobs(argv: Sequence[str], parsers: dict[str, argparse.ArgumentParser]) -> Jobs:
    """Every job's flags, checked before the first stage starts; raises :class:`ValueError` for the
    first that cannot work (``--help`` prints the quickstart's help and exits)."""
    from preprocessing import options
    from trainer import flags, generate_flags

    routed = route_flags(argv, parsers)
    taken = [word for word in argv if word.partition("=")[0] in FROM_WORKDIR]
    if taken:
        raise ValueError(
            f"{taken[0]} is set from --workdir by the quickstart; give --workdir instead"
        )
    work = parsers["quickstart"].parse_args(routed["quickstart"]).workdir.rstrip("/")
    data_dir, job_dir = f"{work}/data", f"{work}/job"
    prep_argv = routed["preprocess"] + ["--output", data_dir]
    encoding = job_flags(options.parse_args, prep_argv, PRESET["preprocess"])[0].encoding
    preset = preset_for(encoding)
    prep, beam_args = job_flags(options.parse_args, prep_argv, preset["preprocess"])
    train_argv = routed["train"] + ["--data-dir", data_dir, "--job-dir", job_dir]
    # --model reference has the last-position objective only: the preset's then gives way.
    train_args = job_flags(flags.parse_args, train_argv, {**preset["train"], "objective": "last"})
    if train_args.model != "reference":
        train_args = job_flags(flags.parse_args, train_argv, preset["train"])
    compose_args = job_flags(
        generate_flags.parse_args,
        routed["generate"]
        + ["--model-dir", f"{job_dir}/model", "--output", f"{work}/composition.mid"],
        preset["generate"],
    )
    return Jobs(work, prep, beam_args, train_args, compose_args)


def main(argv: Sequence[str] | None = None) -> int:
    """The whole chain on the embedded dataset: each job's own parser with :data:`PRESET`.

    Every flag of every job, the composition's folder and any ``--primer`` are checked before the
    first stage, and every refusal is one ``lstm-composer quickstart: error: ...`` line.
    """
    from preprocessing import options
    from trainer import flags, generate_flags

    argv = list(sys.argv[1:] if argv is None else argv)
    parsers = {
        "quickstart": quickstart_parser(),
        "preprocess": options.build_parser(),
        "train": flags.build_parser(),
        "generate": generate_flags.build_parser(),
    }
    try:
        jobs = plan_jobs(argv, parsers)
    except ValueError as exc:
        return fail(exc)
    quiet.import_tensorflow()
    from trainer import compositions

    try:
        compositions.check_paths(jobs.generate, output_flag=f"--workdir {jobs.workdir}")
    except compositions.GenerateError as exc:
        return fail(exc)
    stages = Stages(4)
    try:
        return run_stages(jobs, stages)
    except KeyboardInterrupt:
        where = f"in stage {stages.index} of {stages.total} ({stages.what})"
        return interrupted(PROG, f"{where}; {RESUME}")


RESUME = (
    "run the same command again: the rendered dataset is kept, and training resumes after its "
    "last finished epoch"
)


def run_stages(jobs: Jobs, stages: Stages) -> int:
    """The four stages, each job with its own checked flags; the exit status."""
    from preprocessing import pipeline, sample_data
    from preprocessing.files import PipelineError
    from preprocessing.records import TRAIN, DataError
    from trainer import flags, generate, task

    stages.start("embedded dataset (music21 corpus rendered to MIDI; reused when already there)")
    prep = replace(jobs.preprocess, input=jobs.preprocess.input or sample_data.ensure_dataset())
    stages.done(f": {prep.input}")

    stages.start("preprocessing with Apache Beam (DirectRunner, a parse process per core)")
    try:
        outcome = pipeline.run_job(prep, jobs.beam_args)
    except PipelineError as exc:
        return fail(exc)
    if outcome.failed:
        return fail(pipeline.failure_line(outcome.failed))
    stages.done()

    a = jobs.train
    stages.start(f"training the '{a.model}' LSTM ({a.layers} x {a.units} units, {a.epochs} epochs)")
    try:
        metrics = task.train(a)
    except (DataError, flags.UsageError) as exc:
        return fail(exc)
    stages.done()

    stages.start(f"composing {jobs.generate.length} tokens")
    code = generate.compose(jobs.generate, prog=PROG)
    if code:
        return code
    stages.done()
    print(
        report(
            stages,
            a.data_dir,
            outcome.manifest.windows(TRAIN),
            a.job_dir,
            jobs.generate.output,
            metrics,
        )
    )
    return 0


def fail(exc: Exception | str) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return 2


BIGRAM_MARGIN_POINTS = 2.0
"""How far (percentage points of validation next-token accuracy) the quickstart's model should
beat the bigram baseline: a network that does not know more than a bigram table has not learned
music yet."""


def comparison(metrics: dict) -> list[str]:
    """The exported model's accuracy against the baselines, as the report prints it; pure."""

    def pct(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{100 * value:.1f} %"

    lstm, bigram = metrics.get("val_accuracy"), metrics.get("bigram_val_accuracy")
    epoch, last = metrics.get("epoch"), metrics.get("last_epoch")
    which = (
        f"epoch {epoch} of {last}, the lowest validation loss"
        if epoch is not None and last
        else "the last epoch"
    )
    lines = [
        f"validation next-token accuracy of the exported model ({which}), of the token after "
        "each window (its full context):"
    ]
    if lstm is not None and bigram is not None:
        points = 100 * (lstm - bigram)
        verdict = "clears" if points >= BIGRAM_MARGIN_POINTS else "is below"
        lines.append(
            f"  LSTM {pct('val_accuracy')} vs bigram {pct('bigram_val_accuracy')}: {points:+.1f} points "
            f"({verdict} the +{BIGRAM_MARGIN_POINTS:g} points bar)"
        )
    else:
        lines += [
            f"  LSTM             {pct('val_accuracy')}",
            f"  bigram baseline  {pct('bigram_val_accuracy')}",
        ]
    every = "val_accuracy" + EVERY_POSITION
    if metrics.get(every) is not None and metrics.get("bigram_" + every) is not None:
        lines.append(
            f"  at every position of the windows (what --objective sequence trains): LSTM "
            f"{pct(every)} vs bigram {pct('bigram_' + every)}"
        )
    lines.append(f"  unigram baseline {pct('unigram_val_accuracy')}")
    return lines


def report(
    stages: Stages, data_dir: str, train_windows: int, job_dir: str, music: str, metrics: dict
) -> str:
    """Where everything went, and the exported model's accuracy beside the baselines'."""
    return "\n".join(
        [
            "",
            f"quickstart finished in {time.perf_counter() - stages.started:.0f} s",
            f"  records          {data_dir}  ({train_windows:,} training windows)",
            f"  checkpoints      {job_dir}/checkpoints",
            f"  model            {job_dir}/model/model.keras",
            f"  TensorBoard logs {job_dir}/logs",
            f"  composition      {music}",
            f"  piano roll       {music[:-4]}.png",
            f"  audio            {music[:-4]}.wav",
            "",
            *comparison(metrics),
            "",
            f"watch it: tensorboard --logdir {job_dir}/logs",
        ]
    )
