"""The training job: ``python -m trainer.task`` / ``lstm-composer train``.

Reads a preprocessing output (``--data-dir``), trains the LSTM of :mod:`trainer.model` and writes the
job directory (``--job-dir``, local, ``gs://``, ``ram://`` or Vertex AI's ``/gcs/...``)::

    checkpoints/  weights-improvement-{epoch:02d}-{loss:.4f}.keras   (best by training loss, as the reference)
                  val-improvement-{epoch:02d}-{val_loss:.4f}.keras   (best by validation loss)
    backup/       tf.train.CheckpointManager: model, optimizer, epoch, best losses (pre-emption)
    logs/         TensorBoard: epoch/loss, epoch/val_loss, epoch/val_accuracy, epoch/val_top5_accuracy,
                  epoch/perplexity, epoch/learning_rate, epoch/examples_per_second, baseline/*
    model/        model.keras + vocab.json + manifest.json (everything generation needs)

On Vertex AI, ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR`` and ``AIP_TENSORBOARD_LOG_DIR`` override the
``model/``, ``checkpoints/`` and ``logs/`` folders (``backup/`` then lives beside the checkpoints when
no ``--job-dir`` is given).

Why a custom training loop, not ``model.fit``
---------------------------------------------
Keras 3.15's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` on TF 2.21 (keras-team/keras#20585,
tensorflow/tensorflow#72388: the symbolic build on a ``PerReplica`` batch, and ``reduce(..., axis=0)``
on scalar metrics), and Keras 3 callbacks (``BackupAndRestore``, ``ModelCheckpoint``, ``TensorBoard``)
know nothing of chief and workers, so every worker would write - and delete - the same backup
directory. A work-around for ``fit`` would patch Keras internals that change between releases. The
loop here is small and uses only public, stable tf.distribute APIs, and it is the *one* code path for
the default strategy, ``MirroredStrategy`` (1 CPU, N GPUs, or N logical CPUs in tests) and
``MultiWorkerMirroredStrategy`` (N machines):

* ``strategy.experimental_distribute_dataset`` splits each *global* batch over all replicas;
  ``strategy.run`` runs the step; the loss is ``tf.nn.compute_average_loss`` over the global batch and
  the Keras optimizer all-reduces (sums) the gradients across replicas. ``n`` steps run inside one
  ``tf.function`` call (a ``tf.range`` loop), so small models are not bound by Python overhead.
* Every worker runs the same number of steps per epoch (the training stream is ``.repeat()``-ed; the
  validation stream is one weighted pass padded with weight-0 windows, so a fixed step count covers
  every validation window exactly once), because a worker that stops early would leave its peers
  hanging in a collective. ``--steps-per-epoch`` therefore never runs dry.
* Pre-emption: after every finished epoch a ``tf.train.CheckpointManager`` saves model, optimizer, the
  epoch number and the best losses to ``backup/``; a restarted job with the same flags restores it and
  continues with the next epoch, ending with the asked number of epochs. All workers restore from the
  chief's ``backup/``. All workers take part in every save (reading some distributed variables is a
  collective), but only the chief saves into the job directory: the others save into their own
  local temporary directory, deleted when the job ends. The same holds for ``.keras`` exports; only
  the chief opens TensorBoard writers (the others get a no-op writer) and prints epoch lines.
* Granularity: a job loses at most the epoch it was in. ``PreemptionCheckpointHandler`` (a save at
  the next step after SIGTERM, agreed between workers) is not used: it counts steps, not epochs, so
  resuming mid-epoch would need the partial epoch's metrics checkpointed too; long epochs can be cut
  with ``--steps-per-epoch`` instead.

Bad input (records that do not match the vocabulary or the manifest, an empty dataset, a batch size
smaller than the replica count, an unwritable job directory, a wrong flag) stops with one message on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

from preprocessing.records import join as _join  # the one path join for local, gs:// and ram:// folders

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROG = "lstm-composer train"
DISTRIBUTE = ("auto", "none", "mirrored", "multiworker")


class UsageError(ValueError):
    """A flag or environment that cannot work; the message says why."""


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train the LSTM on a preprocessing output (tf.distribute, checkpoints, TensorBoard).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", required=True, help="the preprocessing pipeline's output (local, gs://, /gcs/...)")
    p.add_argument("--job-dir", default=None, help="root of every output (local, gs://); AIP_* variables override parts")
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--batch-size", type=_positive_int, default=64, help="GLOBAL batch size (split over all replicas)")
    p.add_argument("--learning-rate", type=_positive_float, default=0.001)
    p.add_argument("--model", choices=("fast", "reference"), default="fast")
    p.add_argument("--units", type=_positive_int, default=512, help="LSTM units per layer")
    p.add_argument("--layers", type=_positive_int, default=3, help="number of LSTM layers")
    p.add_argument("--dense-units", type=_positive_int, default=256)
    p.add_argument("--embedding-dim", type=_positive_int, default=64, help="fast model only")
    p.add_argument("--dropout", type=_dropout, default=0.3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--shuffle-buffer", type=_positive_int, default=10_000)
    p.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                   help="cap on training steps per epoch (default: one pass over the training windows)")
    p.add_argument("--validation-steps", type=_positive_int, default=None,
                   help="cap on validation steps (default: one pass over the validation windows)")
    p.add_argument("--baseline-windows", type=int, default=200_000,
                   help="training windows counted for the unigram/bigram baselines (0: skip them)")
    p.add_argument("--sample-every", type=int, default=5,
                   help="every N epochs, log a short greedy sample (piano roll, audio, tokens) to TensorBoard; 0: never")
    p.add_argument("--distribute", choices=DISTRIBUTE, default="auto",
                   help="auto: MultiWorkerMirrored when TF_CONFIG/CLUSTER_SPEC name several workers, else Mirrored")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _dropout(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


# --------------------------------------------------------------------------- environment


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the job writes; see the module docstring."""

    checkpoints: str
    backup: str
    logs: str
    model: str


def resolve_layout(job_dir: str | None, env: Mapping[str, str]) -> Layout:
    """The output folders from ``--job-dir`` and Vertex AI's ``AIP_*_DIR`` variables (which win)."""
    aip_model, aip_ckpt, aip_logs = (env.get(k) or None for k in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR"))
    if not job_dir and not (aip_model and aip_ckpt and aip_logs):
        raise UsageError(
            "--job-dir is required (or all of AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR, as Vertex AI sets them)"
        )
    checkpoints = aip_ckpt or _join(job_dir, "checkpoints")
    return Layout(
        checkpoints=checkpoints.rstrip("/"),
        backup=_join(job_dir, "backup") if job_dir else _join(checkpoints, "backup"),
        logs=(aip_logs or _join(job_dir, "logs")).rstrip("/"),
        model=(aip_model or _join(job_dir, "model")).rstrip("/"),
    )


def cluster_config(env: Mapping[str, str]) -> dict | None:
    """``TF_CONFIG`` as a dict, or one derived from Vertex AI's ``CLUSTER_SPEC``; None when neither is set.

    CLUSTER_SPEC's worker pools map to TF roles: workerpool0 -> chief, workerpool1 -> worker,
    workerpool2 -> ps, workerpool3 -> evaluator.
    """
    text = env.get("TF_CONFIG")
    if text:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return config if config.get("cluster") else None
    text = env.get("CLUSTER_SPEC")
    if not text:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"CLUSTER_SPEC is not valid JSON: {exc}") from None
    roles = {"workerpool0": "chief", "workerpool1": "worker", "workerpool2": "ps", "workerpool3": "evaluator"}
    cluster = {roles[k]: v for k, v in spec.get("cluster", {}).items() if k in roles and v}
    task = spec.get("task", {})
    return {"cluster": cluster, "task": {"type": roles.get(task.get("type"), "chief"), "index": int(task.get("index", 0))}}


def worker_count(config: dict | None) -> int:
    if not config:
        return 1
    cluster = config["cluster"]
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def is_chief(config: dict | None) -> bool:
    if not config or worker_count(config) <= 1:
        return True
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind == "chief" or (kind == "worker" and index == 0 and not config["cluster"].get("chief"))


def task_name(config: dict | None) -> str:
    if not config or worker_count(config) <= 1:
        return "chief"
    task = config.get("task", {})
    return f"{task.get('type')}-{task.get('index', 0)}"


def make_strategy(kind: str, config: dict | None):
    import tensorflow as tf

    workers = worker_count(config)
    if config and set(config["cluster"]) - {"chief", "worker"}:
        raise UsageError(
            f"the cluster names {sorted(set(config['cluster']) - {'chief', 'worker'})}: "
            "only chief and worker pools are supported (MultiWorkerMirroredStrategy)"
        )
    if kind == "auto":
        kind = "multiworker" if workers > 1 else "mirrored"
    if workers > 1 and kind != "multiworker":
        raise UsageError(f"TF_CONFIG names {workers} workers but --distribute {kind} runs on one machine")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multiworker":
        if config:
            os.environ["TF_CONFIG"] = json.dumps(config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")
    ]
    return tf.distribute.MirroredStrategy(devices)


def strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default strategy (no distribution)"


# --------------------------------------------------------------------------- output helpers


def log(message: str) -> None:
    print(f"trainer: {message}", flush=True)


def check_writable(paths: Sequence[str]) -> None:
    import tensorflow as tf

    for path in paths:
        probe = _join(path, f".write-probe-{os.getpid()}")
        try:
            tf.io.gfile.makedirs(path)
            with tf.io.gfile.GFile(probe, "w") as f:
                f.write("ok")
            tf.io.gfile.remove(probe)
        except (tf.errors.OpError, OSError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            raise UsageError(f"cannot write to the job directory {path}: {reason.strip().splitlines()[0]}") from None


class _Outputs:
    """Where this worker writes: the real folders on the chief, a local temporary folder elsewhere."""

    def __init__(self, layout: Layout, chief: bool, name: str):
        self.layout, self.chief = layout, chief
        self._tmp = None if chief else tempfile.mkdtemp(prefix=f"lstm-composer-{name}-")

    def path(self, folder: str, name: str | None = None) -> str:
        base = getattr(self.layout, folder) if self.chief else os.path.join(self._tmp, folder)
        return _join(base, name) if name else base

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


PRIMER_WINDOWS = 16
"""Windows exported to model/primers.json: generate's default primers."""


class _Sampler:
    """The chief's TensorBoard samples: a plain copy of the network (built once, outside any strategy,
    weights copied in at each sample) run by :class:`trainer.generate.Composer` from a fixed primer."""

    def __init__(self, args: argparse.Namespace, seq_len: int, vocab_size: int, vocab: Sequence[str], primer):
        self.args, self.seq_len, self.vocab_size, self.vocab, self.primer = args, seq_len, vocab_size, vocab, primer
        self.composer = None

    def log(self, weights, step: int) -> None:
        from trainer import generate
        from trainer import model as model_lib

        if self.composer is None:
            a = self.args
            copy = model_lib.build(
                a.model, self.seq_len, self.vocab_size, units=a.units, num_layers=a.layers,
                dense_units=a.dense_units, embedding_dim=a.embedding_dim, dropout=a.dropout,
            )
            self.composer = generate.Composer(copy, self.seq_len)
        self.composer.model.set_weights(weights)
        self.composer.sync_weights()
        generate.log_sample_summaries(self.composer, self.primer, self.vocab, step=step)


def save_model(model, path: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    model.save(path)


# --------------------------------------------------------------------------- training


def make_step_functions(strategy, model, global_batch: int):
    """``train_steps(iterator, n)`` and ``eval_steps(iterator, n)``: ``n`` distributed steps in one tf.function.

    ``train_steps`` returns the sum of the ``n`` global-batch mean losses; ``eval_steps`` (on the
    weighted stream of ``trainer.data.dataset(..., weighted=True)``) the weighted sums of
    (cross-entropy, top-1 hits, top-5 hits, examples). Each replica's loss is divided by the *global*
    batch size, and the optimizer sums the gradients over all replicas (Keras' TF optimizer all-reduces
    inside ``apply``), so N replicas take the same step as one device with the whole batch.
    """
    import tensorflow as tf

    from trainer import model as model_lib

    optimizer = model.optimizer
    mixed = model_lib.is_mixed(model)
    top_k = min(5, int(model.output_shape[-1]))

    def step_fn(inputs, targets):
        with tf.GradientTape() as tape:
            probabilities = model(inputs, training=True)
            per_example = model_lib.loss_fn(targets, tf.cast(probabilities, tf.float32))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss) if mixed else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def train_steps(iterator, n):
        total = tf.constant(0.0, tf.float32)
        for _ in tf.range(n):
            per_replica = strategy.run(step_fn, args=next(iterator))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return total

    def eval_fn(inputs, targets, weights):
        probabilities = tf.cast(model(inputs, training=False), tf.float32)
        per_example = model_lib.loss_fn(targets, probabilities)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1), targets), tf.float32)
        in_top = tf.cast(tf.math.in_top_k(targets, probabilities, top_k), tf.float32)
        return tf.stack([tf.reduce_sum(per_example * weights), tf.reduce_sum(correct * weights),
                         tf.reduce_sum(in_top * weights), tf.reduce_sum(weights)])

    @tf.function
    def eval_steps(iterator, n):
        total = tf.zeros([4], tf.float32)
        for _ in tf.range(n):
            per_replica = strategy.run(eval_fn, args=next(iterator))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return total

    return train_steps, eval_steps


def train(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the job described by ``args``; returns the last epoch's metrics (and the baselines)."""
    env = os.environ if env is None else env
    layout = resolve_layout(args.job_dir, env)
    config = cluster_config(env)
    chief, name = is_chief(config), task_name(config)
    if chief:
        check_writable([layout.checkpoints, layout.backup, layout.logs, layout.model])

    import tensorflow as tf

    strategy = make_strategy(args.distribute, config)  # before other TF work (MultiWorkerMirrored needs it)

    import keras

    from trainer import data as data_lib
    from trainer import model as model_lib

    data = data_lib.load(args.data_dir)
    replicas = strategy.num_replicas_in_sync
    workers = worker_count(config) if args.distribute != "none" else 1
    log(
        f"strategy {strategy_name(strategy)} with {replicas} replica(s) on {workers} worker(s); "
        + (f"this is {name}{' (chief)' if chief else ''}" if workers > 1 else "single worker")
    )
    if args.batch_size < replicas:
        raise UsageError(
            f"--batch-size {args.batch_size} is smaller than the {replicas} replicas in sync: "
            f"the global batch is split over the replicas, use at least {replicas}"
        )
    if args.batch_size % replicas:
        log(f"warning: --batch-size {args.batch_size} is not a multiple of {replicas} replicas; batches split unevenly")

    keras.utils.set_random_seed(args.seed)
    global_batch = args.batch_size
    vocab_size, seq_len = data.vocab_size, data.sequence_length
    train_windows, val_windows = data.windows("train"), data.windows("validation")
    steps_per_epoch = data_lib.steps(train_windows, global_batch, args.steps_per_epoch)
    has_validation = val_windows > 0 and bool(data.manifest.validation_shards)
    val_steps = data_lib.steps(val_windows, global_batch, args.validation_steps) if has_validation else 0
    log(
        f"data {args.data_dir}: vocabulary {vocab_size}, sequence length {seq_len}, "
        f"{train_windows} training / {val_windows} validation windows; "
        f"global batch {global_batch}, {steps_per_epoch} steps per epoch, {val_steps} validation steps"
    )
    if not has_validation:
        log("warning: no validation windows; validation metrics and baselines are skipped")

    outputs = _Outputs(layout, chief, name)
    try:
        with strategy.scope():
            try:
                model = model_lib.build(
                    args.model, seq_len, vocab_size, units=args.units, num_layers=args.layers,
                    dense_units=args.dense_units, embedding_dim=args.embedding_dim, dropout=args.dropout,
                    learning_rate=args.learning_rate,
                )
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            optimizer = model.optimizer
            optimizer.build(model.trainable_variables)
        mixed = model_lib.is_mixed(model)
        log(f"model {args.model}: {model.count_params():,} parameters, {'mixed_float16' if mixed else 'float32'}")

        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_loss")
        best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_val_loss")
        checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=epoch_var, best_loss=best_loss, best_val_loss=best_val_loss
        )
        latest = tf.train.latest_checkpoint(layout.backup)
        if latest:
            try:
                checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as exc:
                reason = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
                raise UsageError(
                    f"the backup {latest} does not fit this model ({reason}): start it again with the flags "
                    "it was started with, or use a new --job-dir"
                ) from None
            log(f"resuming from backup {latest}: epoch {int(epoch_var.numpy())} finished, continuing with epoch {int(epoch_var.numpy()) + 1}")
        manager = tf.train.CheckpointManager(checkpoint, directory=outputs.path("backup"), max_to_keep=2)

        writer = tf.summary.create_file_writer(layout.logs) if chief else tf.summary.create_noop_writer()

        # ---- baselines (chief only: they are only logged)
        baselines: dict[str, float] = {}
        if chief and has_validation and args.baseline_windows > 0 and int(epoch_var.numpy()) == 0:
            baselines = data_lib.baselines(
                data_lib.numpy_windows(data, "train", args.baseline_windows),
                data_lib.numpy_windows(data, "validation", args.baseline_windows),
                vocab_size,
            )
            if baselines:
                log(
                    f"baselines (validation next-token accuracy): unigram {baselines['unigram_val_accuracy']:.4f}, "
                    f"bigram {baselines['bigram_val_accuracy']:.4f}"
                )
                with writer.as_default():
                    for key, value in baselines.items():
                        tf.summary.scalar(f"baseline/{key}", value, step=0)
                writer.flush()

        # ---- input
        # The input position is not checkpointed (an iterator checkpoint would tie the backup to one
        # worker count); a resumed job shuffles with a seed moved by its finished epochs instead, so it
        # does not replay epoch 1's order.
        data_seed = args.seed + int(epoch_var.numpy())

        def distributed(split: str, shuffle: bool, weighted: bool):
            ds = data_lib.dataset(
                data, split, global_batch, shuffle_buffer=args.shuffle_buffer, seed=data_seed,
                shuffle=shuffle, repeat=True, weighted=weighted, num_workers=workers,
            )
            return strategy.experimental_distribute_dataset(ds)

        train_iterator = iter(distributed("train", shuffle=True, weighted=False))
        # Every validation window once per epoch (weighted; see trainer.data.dataset).
        val_dataset = distributed("validation", shuffle=False, weighted=True) if has_validation else None

        train_steps, eval_steps = make_step_functions(strategy, model, global_batch)

        # ---- listening while it trains: a fixed primer, sampled into TensorBoard every --sample-every epochs
        primer_split = "validation" if has_validation else "train"
        primers = data_lib.numpy_windows(data, primer_split, PRIMER_WINDOWS)[0]
        sampler = _Sampler(args, seq_len, vocab_size, data.vocab, primers[0]) if args.sample_every > 0 else None

        # ---- epochs
        first = int(epoch_var.numpy()) + 1
        metrics: dict[str, Any] = {**baselines, "epoch": first - 1}
        if first > args.epochs:
            log(f"backup says {first - 1} epochs finished; nothing left to train for --epochs {args.epochs}")
        for epoch in range(first, args.epochs + 1):
            start = time.perf_counter()
            try:
                loss_sum = float(train_steps(train_iterator, tf.constant(steps_per_epoch)))
                elapsed = time.perf_counter() - start
                if has_validation:
                    sums = eval_steps(iter(val_dataset), tf.constant(val_steps)).numpy()
            except tf.errors.OutOfRangeError:
                raise data_lib.DataError(
                    f"the shards in {args.data_dir} hold no records although the manifest counts "
                    f"{train_windows} training and {val_windows} validation windows: the dataset is empty; "
                    "run the pipeline again into an empty directory"
                ) from None
            except tf.errors.InvalidArgumentError as exc:
                raise data_lib.DataError(
                    f"the records in {args.data_dir} do not match vocab.json / manifest.json: "
                    f"{exc.message.strip().splitlines()[0]}"
                ) from None
            loss = loss_sum / steps_per_epoch
            epoch_metrics: dict[str, float] = {
                "loss": loss,
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                "examples_per_second": steps_per_epoch * global_batch / max(elapsed, 1e-9),
            }
            if has_validation:
                val_loss = float(sums[0] / sums[3])
                epoch_metrics.update(
                    val_loss=val_loss,
                    val_accuracy=float(sums[1] / sums[3]),
                    val_top5_accuracy=float(sums[2] / sums[3]),
                    perplexity=float(math.exp(min(val_loss, 700.0))),
                )
            with writer.as_default():
                for key, value in epoch_metrics.items():
                    tf.summary.scalar(f"epoch/{key}", value, step=epoch)
            writer.flush()
            metrics = {**baselines, "epoch": epoch, **epoch_metrics}

            # Best-so-far exports (every worker saves; only the chief into the job directory).
            if loss < best_loss.numpy():
                best_loss.assign(loss)
                save_model(model, outputs.path("checkpoints", f"weights-improvement-{epoch:02d}-{loss:.4f}.keras"))
            if has_validation and metrics["val_loss"] < best_val_loss.numpy():
                best_val_loss.assign(metrics["val_loss"])
                save_model(model, outputs.path("checkpoints", f"val-improvement-{epoch:02d}-{metrics['val_loss']:.4f}.keras"))
            if sampler and epoch % args.sample_every == 0:
                weights = model.get_weights()  # on every worker: reading distributed variables may be a collective
                if chief:
                    with writer.as_default():
                        sampler.log(weights, step=epoch)
                    writer.flush()
            epoch_var.assign(epoch)
            manager.save(checkpoint_number=epoch)
            if chief:
                shown = " ".join(f"{k}={v:.4g}" for k, v in epoch_metrics.items())
                log(f"epoch {epoch}/{args.epochs} finished: {shown}")

        # ---- export
        from preprocessing import records
        from trainer.generate import MODEL_FILE, PRIMERS_FILE

        save_model(model, outputs.path("model", MODEL_FILE))
        if chief:
            for name_ in (records.VOCAB_FILE, records.MANIFEST_FILE):
                tf.io.gfile.copy(records.join(args.data_dir, name_), _join(layout.model, name_), overwrite=True)
            # Default primers for trainer.generate, as the reference primes with a random data window.
            with tf.io.gfile.GFile(_join(layout.model, PRIMERS_FILE), "w") as f:
                json.dump({"split": primer_split, "windows": primers.tolist()}, f)
            log(f"model written to {_join(layout.model, MODEL_FILE)}")
        writer.close()
        return metrics
    finally:
        outputs.close()


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse printed usage and one "error:" line (or --help)
        return int(exc.code or 0)
    from preprocessing.records import DataError

    try:
        train(args)
    except (DataError, UsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
