"""The custom training loop: distributed step functions, the epoch loop, the backup it resumes from.

Why not ``model.fit``: Keras 3.15's ``fit`` fails under MultiWorkerMirroredStrategy, and Keras 3
callbacks know no chief, so every worker would write (and delete) the same backup directory
(``docs/ARCHITECTURE.md`` has the details). This loop uses only public ``tf.distribute`` APIs and is
the one code path for the default strategy, MirroredStrategy and MultiWorkerMirroredStrategy:

* ``strategy.run`` runs a step on every replica; each replica's loss is divided by the *global*
  batch size and the optimizer sums the gradients over all replicas, so N replicas take the same
  step as one device with the whole batch. ``n`` steps run inside one ``tf.function`` call.
* Every worker runs the same number of steps per epoch (the training stream repeats; the validation
  stream is one weighted pass padded with weight-0 windows), because a worker that stopped early
  would leave its peers hanging in a collective.
* After every finished epoch the :class:`Backup` saves model, optimizer, epoch and best losses; a
  restarted job restores it and goes on with the next epoch, so a job loses at most the epoch it was
  in. Beside it, ``run.json`` says which run it belongs to; a different run is refused before
  anything is restored (:mod:`trainer.resume`). Every worker takes part in every save (reading
  distributed variables can be a collective), only the chief's lands in the job directory.
* The learning rate follows ``--lr-schedule`` (:mod:`trainer.schedule`), set before every chunk of
  steps; after the last epoch the best epoch's weights go back for the export (:mod:`trainer.best`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from preprocessing.errors import first_line
from preprocessing.records import RERUN, TRAIN, VALIDATION, DataError
from trainer import data as data_lib
from trainer import measures
from trainer import model as model_lib
from trainer import resume
from trainer.best import BestEpoch, val_checkpoint_name
from trainer.progress import EpochProgress
from trainer.export import save_model
from trainer.flags import UsageError
from trainer.job_dir import WorkerOutputs, set_aside
from trainer.schedule import learning_rate_at


def log(message: str) -> None:
    print(f"trainer: {message}", flush=True)


@dataclass(frozen=True)
class Steps:
    """How many steps an epoch takes, for a global batch over this data."""

    global_batch: int
    per_epoch: int
    validation: int  # 0 when there are no validation windows

    @property
    def has_validation(self) -> bool:
        return self.validation > 0


def make_step_functions(strategy, model, global_batch: int):
    """``train_steps(iterator, n)`` and ``eval_steps(iterator, n)``: ``n`` distributed steps in one tf.function.

    ``train_steps`` returns the sum of the ``n`` global-batch mean losses; ``eval_steps`` (on the
    weighted stream of ``trainer.data.dataset(..., weighted=True)``) the weighted sums of
    (cross-entropy, top-1 hits, top-5 hits, examples).
    """
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


class Backup:
    """Model, optimizer, the finished epoch and the best losses, saved after every epoch, with the
    fingerprint of the run that made them (:mod:`trainer.resume`) beside them."""

    def __init__(self, model, backup_dir: str, outputs: WorkerOutputs, run: dict[str, Any]):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_loss")
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_val_loss")
        self.optimizer = model.optimizer
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch, best_loss=self.best_loss,
            best_val_loss=self.best_val_loss,
        )
        self.backup_dir, self.outputs, self.run = backup_dir, outputs, run
        self.manager: tf.train.CheckpointManager | None = None  # made once the old backup is settled

    @property
    def finished_epochs(self) -> int:
        return int(self.epoch.numpy())

    def restore(self, *, replace: bool = False) -> None:
        """Check the chief's backup against this run, before anything is restored, then resume it, set
        it aside (``--replace-run``, the chief only) or refuse it. Every worker reads the chief's folder,
        so all take the same decision (a worker that reads after the chief set it aside finds none)."""
        latest = tf.train.latest_checkpoint(self.backup_dir)
        recorded = resume.read(self.backup_dir) if latest else None
        plan = resume.plan(recorded, self.run, has_backup=bool(latest), replace=replace)
        if plan.action == "refuse":
            raise UsageError(resume.refusal(self.backup_dir, plan.conflicts))
        if plan.action == "replace":
            if self.outputs.chief:
                why = f"a different run ({resume.describe(plan.conflicts)})" if plan.recorded else "a run without run.json"
                aside = set_aside(self.outputs.layout)
                log(f"{resume.REPLACE_FLAG}: the backup {latest} is of {why}; moved that run's files into "
                    f"{aside}/ in backup/, checkpoints/, logs/ and model/; starting at epoch 1")
        elif plan.action == "resume":
            if replace:
                log(f"{resume.REPLACE_FLAG}: the backup {latest} is of this same run; resuming it")
            self._resume(latest, plan)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory=self.outputs.path("backup"), max_to_keep=2)

    def _resume(self, latest: str, plan: resume.Plan) -> None:
        if not plan.recorded:
            log(f"warning: the backup {latest} has no {resume.FILE} (an earlier version made it), so its data and "
                f"flags cannot be checked; resuming it as this run. If it is not, add {resume.REPLACE_FLAG}")
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            detail = first_line(exc)  # TensorFlow's can list every variable: keep the line readable
            detail = detail if len(detail) <= 200 else detail[:200] + "…"
            raise UsageError(
                f"the backup {latest} does not fit this model ({detail}): start it again with the "
                f"flags it was started with, use a new --job-dir, or add {resume.REPLACE_FLAG}"
            ) from None
        # The optimizer's learning rate is a variable of the backup; the command line's value wins.
        self.optimizer.learning_rate = self.run["learning_rate"]
        done = self.finished_epochs
        log(f"resuming from backup {latest}: epoch {done} finished, continuing with epoch {done + 1}")
        for line in resume.change_lines(plan.changes):
            log(line)

    def save(self, epoch: int) -> None:
        """The run's fingerprint, then the checkpoint: no checkpoint is newer than the ``run.json`` beside it."""
        self.epoch.assign(epoch)
        resume.write(self.outputs.path("backup"), self.run)
        self.manager.save(checkpoint_number=epoch)


class Sampler:
    """The chief's TensorBoard samples: a plain copy of the network (built once, outside any strategy,
    weights copied in at each sample) run by :class:`trainer.generate.Composer` from fixed primers.

    Each sample is a greedy piece from the first primer (piano roll, audio, tokens: consecutive
    samples differ only because the model changed) and the music measures of :mod:`trainer.measures`
    (``music/<measure>``, the names ``evaluate`` reports) of :data:`MEASURE_PIECES` seeded pieces of
    :data:`MEASURE_LENGTH` tokens at temperature 1 (generation's default) against validation excerpts
    of the same length (``music_validation/<measure>``, logged once).
    """

    MEASURE_PIECES, MEASURE_LENGTH, VALIDATION_WINDOWS = 4, 256, 20_000

    def __init__(self, args: argparse.Namespace, data: data_lib.Data, primers: Sequence[Sequence[int]]):
        from trainer.sampling import encoding_for

        self.args, self.data, self.primers = args, data, primers
        self.encoding = encoding_for(data.manifest, data.data_dir)
        self.composer = None
        self.can_measure: bool | None = None  # muspy importable; asked at the first sample
        self.reference: list[list[str]] | None = None  # validation excerpts, read at the first sample

    def log(self, weights, step: int) -> None:
        from trainer import generate

        if self.composer is None:
            a = self.args
            copy = model_lib.build(
                a.model, self.data.sequence_length, self.data.vocab_size, units=a.units, num_layers=a.layers,
                dense_units=a.dense_units, embedding_dim=a.embedding_dim, dropout=a.dropout,
            )
            self.composer = generate.Composer(copy, self.data.sequence_length, self.encoding.grammar(self.data.vocab))
        self.composer.model.set_weights(weights)
        self.composer.sync_weights()
        try:
            generate.log_sample_summaries(self.composer, self.primers[0], self.data.vocab, step=step,
                                          encoding=self.encoding)
            self.log_measures(step)
        except Exception as exc:  # noqa: BLE001 - a picture must never end a job: say why, train on
            log(f"warning: the TensorBoard sample of epoch {step} failed ({type(exc).__name__}: {first_line(exc)}); "
                "training goes on")

    def log_measures(self, step: int) -> None:
        """``music/<measure>`` of this sample's pieces (skipped, with one warning, where muspy is missing)."""
        if self.can_measure is None:
            try:
                measures.muspy_module()
                self.can_measure = True
            except measures.MeasureError as exc:
                log(f"warning: {exc}; TensorBoard gets no music/ measures")
                self.can_measure = False
        if not self.can_measure:
            return
        first = self.reference is None
        if self.reference is None:
            self.reference = self.validation_excerpts()
        rows = min(self.MEASURE_PIECES, len(self.primers))
        primers = np.asarray(self.primers[:rows])
        ids = self.composer.generate(primers, self.MEASURE_LENGTH, temperature=1.0, seed=self.args.seed)
        result = measures.compare(self.composer.pieces(primers, ids, self.data.vocab), self.reference, self.encoding)
        values = {**result["generated"], measures.OVERLAP: result[measures.OVERLAP]}
        shown = {f"music/{name}": value for name, value in values.items()}
        if first:
            shown.update({f"music_validation/{name}": v for name, v in result["validation"].items()})
        for tag, value in shown.items():
            if value is not None:
                tf.summary.scalar(tag, value, step=step)

    def validation_excerpts(self) -> list[list[str]]:
        """The validation pieces (reassembled from the windows) cut to :data:`MEASURE_LENGTH` tokens."""
        if not (self.data.windows(VALIDATION) and self.data.manifest.validation_shards):
            return []
        inputs, targets = data_lib.numpy_windows(self.data, VALIDATION, self.VALIDATION_WINDOWS)
        pieces = measures.reassemble(inputs, targets, self.data.manifest.stride) if len(targets) else []
        return measures.excerpts([[self.data.vocab[i] for i in p] for p in pieces], self.MEASURE_LENGTH)


class EpochLoop:
    """Runs the epochs of one job on one worker; see the module docstring."""

    def __init__(self, args, strategy, model, data: data_lib.Data, steps: Steps, *, workers: int, chief: bool,
                 writer, outputs: WorkerOutputs, backup: Backup, sampler: Sampler | None):
        self.args, self.model, self.data, self.steps = args, model, data, steps
        self.chief, self.writer, self.outputs, self.backup, self.sampler = chief, writer, outputs, backup, sampler
        self.workers = workers
        # The input position is not checkpointed (an iterator checkpoint would tie the backup to one
        # worker count); a resumed job shuffles with a seed moved by its finished epochs instead.
        seed = args.seed + backup.finished_epochs

        def distributed(split: str, shuffle: bool, weighted: bool):
            ds = data_lib.dataset(
                data, split, steps.global_batch, shuffle_buffer=args.shuffle_buffer, seed=seed,
                shuffle=shuffle, repeat=True, weighted=weighted, num_workers=workers,
            )
            return strategy.experimental_distribute_dataset(ds)

        self.train_iterator = iter(distributed(TRAIN, shuffle=True, weighted=False))
        # Every validation window once per epoch (weighted; see trainer.data.dataset).
        self.validation = distributed(VALIDATION, shuffle=False, weighted=True) if steps.has_validation else None
        self.train_steps, self.eval_steps = make_step_functions(strategy, model, steps.global_batch)
        self.best = BestEpoch()  # the epoch model/ gets (trainer.best)

    def run(self, baselines: dict[str, float]) -> dict[str, Any]:
        """Every epoch not finished yet; returns the last epoch's metrics (and the baselines)."""
        first = self.backup.finished_epochs + 1
        metrics: dict[str, Any] = {**baselines, "epoch": first - 1}
        if first > self.args.epochs:
            log(f"backup says {first - 1} epochs finished; nothing left to train for --epochs {self.args.epochs}")
        for epoch in range(first, self.args.epochs + 1):
            epoch_metrics = self.run_epoch(epoch)
            self.log_scalars(epoch_metrics, epoch)
            metrics = {**baselines, "epoch": epoch, **epoch_metrics}
            self.save_improvements(epoch, epoch_metrics)
            if self.sampler and epoch % self.args.sample_every == 0:
                self.log_sample(epoch)
            self.backup.save(epoch)
            if self.chief:
                shown = " ".join(f"{k}={v:.4g}" for k, v in epoch_metrics.items())
                log(f"epoch {epoch}/{self.args.epochs} finished: {shown}")
        last = self.args.epochs
        if self.sampler and first <= last and last % self.args.sample_every:
            self.log_sample(last)  # the end of training is always sampled and measured
        return self.restore_best(metrics, last_epoch=max(first - 1, last))

    def restore_best(self, last: dict[str, Any], last_epoch: int) -> dict[str, Any]:
        """Put the best epoch's weights (by validation loss) back for the export; its metrics, with
        ``epoch`` the exported epoch and ``last_epoch`` the last one trained."""
        epoch, known = self.best.restore(self.model, last_epoch=last_epoch, checkpoints_dir=self.outputs.layout.checkpoints,
                                         best_val_loss=float(self.backup.best_val_loss.numpy()), log=log)
        chosen = {**last, **self.best.metrics} if known else last
        if not known and self.steps.has_validation and (epoch != last_epoch or "val_loss" not in last):
            chosen = {**last, **self.validation_metrics()}  # a best epoch from before a restart
        why = "the lowest val_loss" if self.steps.has_validation else "the last: no validation windows"
        if self.chief:
            log(f"exported epoch {epoch} of {last_epoch} ({why})")
        return {**chosen, "epoch": epoch, "last_epoch": last_epoch}

    def train_epoch(self, epoch: int) -> float:
        """The epoch's training steps, in chunks with progress between them (:mod:`trainer.progress`);
        the sum of their losses."""
        progress = EpochProgress(epoch, self.args.epochs, self.steps.per_epoch, terminal=sys.stdout.isatty(),
                                 timed=self.workers == 1, enabled=self.chief)
        loss_sum, done = 0.0, 0
        while done < self.steps.per_epoch:
            chunk = progress.next_chunk()
            self.model.optimizer.learning_rate = learning_rate_at(
                self.args.lr_schedule, self.args.learning_rate, (epoch - 1) * self.steps.per_epoch + done,
                self.args.epochs * self.steps.per_epoch)
            chunk_loss = float(self.train_steps(self.train_iterator, tf.constant(chunk)))
            done += chunk
            loss_sum += chunk_loss
            progress.update(chunk, chunk_loss)
        return loss_sum

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of training steps, then one validation pass; the epoch's metrics."""
        steps, data_dir = self.steps, self.args.data_dir
        start = time.perf_counter()
        try:
            loss_sum = self.train_epoch(epoch)
            elapsed = time.perf_counter() - start
            if steps.has_validation:
                sums = self.eval_steps(iter(self.validation), tf.constant(steps.validation)).numpy()
        except tf.errors.OutOfRangeError:
            raise DataError(
                f"the shards in {data_dir} hold no records although the manifest counts "
                f"{self.data.windows(TRAIN)} training and {self.data.windows(VALIDATION)} "
                f"validation windows: the dataset is empty; {RERUN}"
            ) from None
        except tf.errors.InvalidArgumentError as exc:
            raise DataError(
                f"the records in {data_dir} do not match vocab.json / manifest.json: {first_line(exc)}"
            ) from None
        except tf.errors.DataLossError as exc:  # a shard damaged after data.load checked it
            raise DataError(f"a shard in {data_dir} is damaged: {first_line(exc)}; {RERUN}") from None
        metrics = {
            "loss": loss_sum / steps.per_epoch,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "examples_per_second": steps.per_epoch * steps.global_batch / max(elapsed, 1e-9),
        }
        if steps.has_validation:
            metrics.update(self.validation_metrics(sums))
        return metrics

    def validation_metrics(self, sums=None) -> dict[str, float]:
        """Validation loss, accuracy, top-5 accuracy and perplexity from ``eval_steps``' sums (one
        validation pass of the model as it is now when none are given)."""
        if sums is None:
            sums = self.eval_steps(iter(self.validation), tf.constant(self.steps.validation)).numpy()
        val_loss = float(sums[0] / sums[3])
        return {"val_loss": val_loss, "val_accuracy": float(sums[1] / sums[3]),
                "val_top5_accuracy": float(sums[2] / sums[3]), "perplexity": float(math.exp(min(val_loss, 700.0)))}

    def log_scalars(self, metrics: dict[str, float], epoch: int) -> None:
        with self.writer.as_default():
            for key, value in metrics.items():
                tf.summary.scalar(f"epoch/{key}", value, step=epoch)
        self.writer.flush()

    def save_improvements(self, epoch: int, metrics: dict[str, float]) -> None:
        """Best-so-far exports (every worker saves; only the chief into the job directory)."""
        backup, loss = self.backup, metrics["loss"]
        if loss < backup.best_loss.numpy():
            backup.best_loss.assign(loss)
            save_model(self.model, self.outputs.path("checkpoints", f"weights-improvement-{epoch:02d}-{loss:.4f}.keras"))
        val_loss = metrics.get("val_loss")
        if val_loss is not None and val_loss < backup.best_val_loss.numpy():
            backup.best_val_loss.assign(val_loss)
            save_model(self.model, self.outputs.path("checkpoints", val_checkpoint_name(epoch, val_loss)))
            self.best.keep(self.model, epoch, metrics)

    def log_sample(self, epoch: int) -> None:
        weights = self.model.get_weights()  # on every worker: reading distributed variables may be a collective
        if self.chief:
            with self.writer.as_default():
                self.sampler.log(weights, step=epoch)
            self.writer.flush()
