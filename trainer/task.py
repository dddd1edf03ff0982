"""The training job: ``lstm-composer train`` / ``python -m trainer.task`` (the trainer image's entry
point).

Reads a preprocessing output (``--data-dir``), trains the LSTM of :mod:`trainer.model` under the
strategy of :mod:`trainer.distribute` with the loop of :mod:`trainer.loop`, and writes the job
directory of :mod:`trainer.job_dir` (local, ``gs://``, ``ram://`` or Vertex AI's ``/gcs/...``).
:func:`train` reads top to bottom as the job's phases. Bad input (records that do not match the
vocabulary or the manifest, an empty dataset, a batch smaller than the replica count, an unwritable
job directory, a wrong flag) stops with one message on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from preprocessing import quiet
from preprocessing.messages import interrupted
from preprocessing.records import TRAIN, VALIDATION, DataError, join
from trainer.flags import PROG, UsageError, parse_args

# The phases import TensorFlow and the modules built on it when a job runs, not when this module is
# imported: `--help` and a wrong flag answer at once, without TensorFlow's start-up lines.


def train(args, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the job described by ``args``; returns the exported (best by validation loss) epoch's
    metrics, with ``epoch`` that epoch and ``last_epoch`` the last one trained (and the
    baselines)."""
    import tensorflow as tf

    from trainer.job_dir import WorkerOutputs

    job = prepare(args, os.environ if env is None else env)
    chief = job.worker.chief
    with WorkerOutputs(job.layout, chief, job.worker.name) as outputs:
        model = build_model(args, job.data, job.strategy)
        backup = restore_backup(job, model, outputs)
        writer = (
            tf.summary.create_file_writer(job.layout.logs)
            if chief
            else tf.summary.create_noop_writer()
        )
        first_start = chief and backup.finished_epochs == 0
        baselines = log_baselines(args, job.data, job.steps, writer, first_start=first_start)
        primer_split = VALIDATION if job.steps.has_validation else TRAIN
        primers = fixed_primers(job, primer_split)
        rate = validation_rate(job)
        metrics = run_epochs(job, model, writer, outputs, backup, primers, baselines, rate)
        export_model(model, outputs, args.data_dir, primers, primer_split, chief=chief)
        writer.close()
        return metrics


@dataclass(frozen=True)
class Job:
    """What every phase after :func:`prepare` works with."""

    args: Any  # argparse.Namespace of trainer.flags
    layout: Any  # trainer.job_dir.Layout
    worker: Any  # trainer.distribute.Worker
    strategy: Any  # a tf.distribute.Strategy
    data: Any  # trainer.data.Data
    steps: Any  # trainer.steps.Steps


def prepare(args, env: Mapping[str, str]) -> Job:
    """The job directory and this worker, the strategy, the data (every shard checked) and the
    steps: everything that can refuse the job, before the chief makes a folder."""
    from trainer import data as data_lib
    from trainer.distribute import Worker, device_line, make_strategy
    from trainer.job_dir import check_writable, resolve_layout
    from trainer.progress import log

    layout = resolve_layout(args.job_dir, env)
    worker = Worker.from_env(env, args.distribute)
    # before other TF work (MultiWorkerMirrored needs it)
    strategy = make_strategy(args.distribute, worker.config)
    log(device_line(args.model))
    # every shard checked: nothing trains yet
    data = data_lib.load(args.data_dir, full=args.verify_shards == "full")
    steps = plan_steps(args, data, strategy, worker)
    # after every check that can refuse the job: a refused job leaves no folders behind
    if worker.chief:
        check_writable([layout.checkpoints, layout.backup, layout.logs, layout.model])
    return Job(args, layout, worker, strategy, data, steps)


def restore_backup(job: Job, model, outputs):
    """The backup of this run: resumed, set aside (``--replace-run``) or refused, by its
    ``run.json``, before anything is restored."""
    from trainer import resume
    from trainer.backup import Backup

    backup = Backup(
        model, job.layout.backup, outputs, resume.fingerprint(job.data.manifest, vars(job.args))
    )
    backup.restore(replace=job.args.replace_run)
    return backup


def fixed_primers(job: Job, split: str):
    """The data windows that start the TensorBoard samples and go into ``model/primers.json``."""
    from trainer import data as data_lib
    from trainer.export import PRIMER_WINDOWS

    return data_lib.numpy_windows(job.data, split, PRIMER_WINDOWS)[0]


def validation_rate(job: Job):
    """The validation pieces' tokens per beat and per note (:mod:`trainer.bits_per_beat`), counted
    once, for the validation's bits per beat and per note; None without validation windows."""
    from preprocessing.reader import encoding_of
    from trainer import data as data_lib
    from trainer.bits_per_beat import RATE_RECORDS, token_rate
    from trainer.progress import log

    if not job.steps.has_validation:
        return None
    encoding = encoding_of(job.data.data_dir, job.data.manifest, remedy=None)
    vocab = job.data.vocab
    pieces = data_lib.pieces(job.data, VALIDATION, RATE_RECORDS)
    try:
        rate = token_rate(([vocab[i] for i in piece] for piece in pieces), encoding)
    except Exception as exc:  # noqa: BLE001 - a side figure: tokens that are no music never stop a job
        if job.worker.chief:
            log(
                f"warning: the validation pieces could not be decoded ({type(exc).__name__}: "
                f"{exc}); val_bits_per_beat and _per_note are not reported"
            )
        return None
    if job.worker.chief and rate.tokens_per_beat and rate.tokens_per_note:
        log(
            f"validation pieces: {rate.tokens_per_beat:.3f} tokens per beat, "
            f"{rate.tokens_per_note:.3f} per note (val_bits_per_beat and _per_note use them)"
        )
    return rate


def run_epochs(
    job: Job, model, writer, outputs, backup, primers, baselines: dict[str, float], rate=None
) -> dict[str, Any]:
    """Every epoch not finished yet (:class:`trainer.loop.EpochLoop`); the exported epoch's
    metrics."""
    from trainer import loop
    from trainer.tensorboard_samples import TensorBoardSamples

    samples = TensorBoardSamples(job.args, job.data, primers) if job.args.sample_every > 0 else None
    epochs = loop.EpochLoop(
        job.args,
        job.strategy,
        model,
        job.data,
        job.steps,
        workers=job.worker.workers,
        chief=job.worker.chief,
        writer=writer,
        outputs=outputs,
        backup=backup,
        samples=samples,
        rate=rate,
    )
    return epochs.run(baselines)


def plan_steps(args, data, strategy, worker):
    """Steps per epoch for the global batch; refuses a batch smaller than the replicas in sync."""
    from trainer import data as data_lib
    from trainer.distribute import strategy_name
    from trainer.progress import log
    from trainer.steps import Steps

    replicas = strategy.num_replicas_in_sync
    log(
        f"strategy {strategy_name(strategy)} with {replicas} replica(s) on {worker.workers} worker(s); "
        + worker.describe()
    )
    if args.batch_size < replicas:
        raise UsageError(
            f"--batch-size {args.batch_size} is smaller than the {replicas} replicas in sync: "
            f"the global batch is split over the replicas, use at least {replicas}"
        )
    if args.batch_size % replicas:
        log(
            f"warning: --batch-size {args.batch_size} is not a multiple of {replicas} replicas; batches split unevenly"
        )
    check_objective(args, data)
    train_windows, val_windows = data.windows(TRAIN), data.windows(VALIDATION)
    has_validation = val_windows > 0 and bool(data.manifest.validation_shards)
    examples = data_lib.examples_per_epoch(data, args.objective)
    validation_pass = data_lib.steps(val_windows, args.batch_size)  # more would count nothing
    steps = Steps(
        global_batch=args.batch_size,
        per_epoch=data_lib.steps(examples, args.batch_size, args.steps_per_epoch),
        validation=min(validation_pass, args.validation_steps or validation_pass)
        if has_validation
        else 0,
    )
    per_epoch = (
        f"{examples:,} crops of {data.sequence_length + 1} tokens a pass"
        if examples != train_windows
        else f"{examples:,} windows a pass"
    )
    log(
        f"data {args.data_dir}: vocabulary {data.vocab_size}, sequence length {data.sequence_length}, "
        f"{train_windows:,} training / {val_windows:,} validation windows ({data.manifest.layout}); "
        f"--objective {args.objective}: {per_epoch}; global batch {steps.global_batch}, "
        f"{steps.per_epoch} steps per epoch, {steps.validation} validation steps"
    )
    if data.transpositions is not None:
        log(transposition_line(data))
    if not has_validation:
        log("warning: no validation windows; validation metrics and baselines are skipped")
    return steps


def check_objective(args, data) -> None:
    """Refuse ``--objective last`` on records that do not hold every window of their pieces (a
    format-2 output written at a stride above 1): it would train on a fraction of them."""
    manifest = data.manifest
    if args.objective == "last" and not manifest.every_window:
        raise UsageError(
            f"{args.data_dir} stores one window every {manifest.stride} tokens (format "
            f"{manifest.format_version}, --stride {manifest.stride}), so --objective last would "
            "skip most of its windows: preprocess it again with this version (its spans hold "
            "every window at any --stride), or train with --objective sequence"
        )


def transposition_line(data) -> str:
    """What moving the training windows by ``--transpose`` does to this data, from its counts."""
    from preprocessing.transpositions import unmoved_share

    c, k = data.manifest.counts, data.manifest.transpose
    return (
        f"transposition: each training window moved by a shift drawn from -{k}..{k} semitones, "
        f"anew every epoch; {c.get('windows_not_always_movable', 0):,} of the windows hold a note "
        f"some shift cannot move, so {100 * unmoved_share(c, k):.2g} % of the draws leave a "
        "window unmoved"
    )


def build_model(args, data, strategy):
    """The network of ``--model``, seeded, with its optimizer's variables made under the
    strategy."""
    import keras

    from trainer import model as model_lib
    from trainer.progress import log

    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        try:
            model = model_lib.build(
                args.model,
                data.sequence_length,
                data.vocab_size,
                units=args.units,
                num_layers=args.layers,
                dense_units=args.dense_units,
                embedding_dim=args.embedding_dim,
                dropout=args.dropout,
                learning_rate=args.learning_rate,
                objective=args.objective,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        model.optimizer.build(model.trainable_variables)
    precision = "mixed_float16" if model_lib.is_mixed(model) else "float32"
    log(
        f"model {args.model}: {model.count_params():,} parameters, {precision}, --objective "
        f"{args.objective}"
    )
    return model


def log_baselines(args, data, steps, writer, *, first_start: bool) -> dict[str, float]:
    """The unigram and bigram baselines' validation accuracy, logged once (by the chief, on a
    first start): at the last position, and for ``--objective sequence`` over every position too."""
    import tensorflow as tf

    from trainer import data as data_lib
    from trainer.baselines import EVERY_POSITION, baselines
    from trainer.progress import log

    if not (first_start and steps.has_validation and args.baseline_windows > 0):
        return {}
    scores = baselines(
        data_lib.numpy_windows(data, TRAIN, args.baseline_windows),
        data_lib.numpy_windows(data, VALIDATION, args.baseline_windows),
        data.vocab_size,
        every_position=args.objective == "sequence",
    )
    if scores:
        shown = f"unigram {scores['unigram_val_accuracy']:.4f}, bigram {scores['bigram_val_accuracy']:.4f}"
        if "bigram_val_accuracy" + EVERY_POSITION in scores:
            shown += (
                f"; every position: unigram {scores['unigram_val_accuracy' + EVERY_POSITION]:.4f}, "
                f"bigram {scores['bigram_val_accuracy' + EVERY_POSITION]:.4f}"
            )
        log(f"baselines (validation next-token accuracy): {shown}")
        with writer.as_default():
            for key, value in scores.items():
                tf.summary.scalar(f"baseline/{key}", value, step=0)
        writer.flush()
    return scores


def export_model(model, outputs, data_dir: str, primers, primer_split: str, *, chief: bool) -> None:
    """``model/``: every worker saves the model (a collective), the chief adds vocabulary,
    manifest, primers."""
    from trainer.export import MODEL_FILE, save_model, write_model_dir
    from trainer.progress import log

    save_model(model, outputs.path("model", MODEL_FILE))
    if chief:
        write_model_dir(outputs.layout.model, data_dir, primers, primer_split)
        log(f"model written to {join(outputs.layout.model, MODEL_FILE)}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse printed usage and one "error:" line (or --help)
        return int(exc.code or 0)
    quiet.import_tensorflow()
    try:
        train(args)
    except (DataError, UsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return interrupted(PROG, RESUME)
    return 0


RESUME = (
    "the backup in the job directory keeps every finished epoch; run the same command again to "
    "resume after the last one"
)


if __name__ == "__main__":
    sys.exit(main())
