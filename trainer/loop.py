"""The custom training loop: the epochs that run the distributed steps of :mod:`trainer.steps`.

Why not ``model.fit``: Keras 3.15's ``fit`` fails under MultiWorkerMirroredStrategy, and Keras 3
callbacks know no chief, so every worker would write (and delete) the same backup directory
(``docs/ARCHITECTURE.md`` has the details). This loop uses only public ``tf.distribute`` APIs and is
the one code path for the default strategy, MirroredStrategy and MultiWorkerMirroredStrategy:

* The gradient step is :func:`trainer.steps.train_steps_function`, ``n`` steps per call.
* Every worker runs the same number of steps per epoch (the training stream repeats; the validation
  stream is one weighted pass padded with weight-0 windows), because a worker that stopped early
  would leave its peers hanging in a collective.
* :class:`EpochLoop` runs the epochs: steps in chunks with progress between them
  (:mod:`trainer.progress`), the learning rate of ``--lr-schedule`` (:mod:`trainer.schedule`) set
  before every chunk, a validation pass, the scalars, the best-so-far checkpoints, a TensorBoard
  sample now and then (:mod:`trainer.tensorboard_samples`) and the backup after every epoch
  (:mod:`trainer.backup`); after the last epoch the best epoch's weights go back for the export
  (:mod:`trainer.best`).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import keras
import tensorflow as tf

from preprocessing.messages import first_line
from preprocessing.records import RERUN, TRAIN, VALIDATION, DataError
from trainer import data as data_lib
from trainer.backup import Backup
from trainer.best import BestEpoch, val_checkpoint_name
from trainer.bits_per_beat import TokenRate, with_bits
from trainer.export import save_model
from trainer.flags import UsageError
from trainer.job_dir import WorkerOutputs
from trainer.progress import EpochProgress, log
from trainer.schedule import learning_rate_at
from trainer.steps import Steps, eval_steps_function, train_steps_function, validation_metrics
from trainer.tensorboard_samples import TensorBoardSamples


class EpochLoop:
    """Runs the epochs of one job on one worker; see the module docstring."""

    def __init__(
        self,
        args,
        strategy,
        model,
        data: data_lib.Data,
        steps: Steps,
        *,
        workers: int,
        chief: bool,
        writer,
        outputs: WorkerOutputs,
        backup: Backup,
        samples: TensorBoardSamples | None,
        rate: TokenRate | None = None,
    ):
        self.args = args
        self.rate = rate  # the validation pieces' tokens per beat and note: the bits figures
        self.model = model
        self.data = data
        self.steps = steps
        self.workers = workers
        self.chief = chief
        self.writer = writer
        self.outputs = outputs
        self.backup = backup
        self.samples = samples
        self.best = BestEpoch()  # the epoch model/ gets (trainer.best)
        self.train_steps = train_steps_function(strategy, model, steps.global_batch)
        self.eval_steps = eval_steps_function(strategy, model)
        # The input position is not checkpointed (an iterator checkpoint would tie the backup to one
        # worker count); a resumed job shuffles with a seed moved by its finished epochs instead.
        seed = args.seed + backup.finished_epochs

        def distributed(split: str, shuffle: bool, weighted: bool):
            ds = data_lib.dataset(
                data,
                split,
                steps.global_batch,
                objective=args.objective,
                shuffle_buffer=args.shuffle_buffer,
                seed=seed,
                shuffle=shuffle,
                repeat=True,
                weighted=weighted,
                num_workers=workers,
            )
            return strategy.experimental_distribute_dataset(ds)

        self.train_iterator = iter(distributed(TRAIN, shuffle=True, weighted=False))
        # Every validation window once per epoch (weighted; see trainer.data.dataset).
        self.validation = None
        if steps.has_validation:
            self.validation = distributed(VALIDATION, shuffle=False, weighted=True)

    def run(self, baselines: dict[str, float]) -> dict[str, Any]:
        """Every epoch not finished yet; returns the last epoch's metrics (and the baselines)."""
        first = self.backup.finished_epochs + 1
        metrics: dict[str, Any] = {**baselines, "epoch": first - 1}
        if first > self.args.epochs:
            log(
                f"backup says {first - 1} epochs finished; nothing left to train for --epochs {self.args.epochs}"
            )
        for epoch in range(first, self.args.epochs + 1):
            epoch_metrics = self.run_epoch(epoch)
            self.log_scalars(epoch_metrics, epoch)
            metrics = {**baselines, "epoch": epoch, **epoch_metrics}
            self.save_improvements(epoch, epoch_metrics)
            if self.samples and epoch % self.args.sample_every == 0:
                self.log_sample(epoch)
            self.backup.save(epoch)
            if self.chief:
                shown = " ".join(f"{k}={v:.4g}" for k, v in epoch_metrics.items())
                log(f"epoch {epoch}/{self.args.epochs} finished: {shown}")
        last = self.args.epochs
        if self.samples and first <= last and last % self.args.sample_every:
            self.log_sample(last)  # the end of training is always sampled and measured
        return self.restore_best(metrics, last_epoch=max(first - 1, last))

    def restore_best(self, last: dict[str, Any], last_epoch: int) -> dict[str, Any]:
        """Put the best epoch's weights (by validation loss) back for the export; its metrics, with
        ``epoch`` the exported epoch and ``last_epoch`` the last one trained."""
        epoch, known = self.best.restore(
            self.model,
            last_epoch=last_epoch,
            checkpoints_dir=self.outputs.layout.checkpoints,
            best_val_loss=float(self.backup.best_val_loss.numpy()),
            log=log,
        )
        chosen = {**last, **self.best.metrics} if known else last
        if (
            not known
            and self.steps.has_validation
            and (epoch != last_epoch or "val_loss" not in last)
        ):
            chosen = {**last, **self.validation_metrics()}  # a best epoch from before a restart
        why = (
            "the lowest val_loss"
            if self.steps.has_validation
            else "the last: no validation windows"
        )
        if self.chief:
            log(f"exported epoch {epoch} of {last_epoch} ({why})")
        return {**chosen, "epoch": epoch, "last_epoch": last_epoch}

    def train_epoch(self, epoch: int) -> float:
        """The epoch's training steps, in chunks with progress between them
        (:mod:`trainer.progress`); the sum of their losses."""
        progress = EpochProgress(
            epoch,
            self.args.epochs,
            self.steps.per_epoch,
            terminal=sys.stdout.isatty(),
            timed=self.workers == 1,
            enabled=self.chief,
        )
        loss_sum, done = 0.0, 0
        while done < self.steps.per_epoch:
            chunk = progress.next_chunk()
            self.model.optimizer.learning_rate = learning_rate_at(
                self.args.lr_schedule,
                self.args.learning_rate,
                (epoch - 1) * self.steps.per_epoch + done,
                self.args.epochs * self.steps.per_epoch,
            )
            try:
                total, first_bad = self.train_steps(self.train_iterator, tf.constant(chunk))
            except tf.errors.InvalidArgumentError:
                # An op that refuses infinite weights (an optimizer's sparse update) stops the
                # chunk before its loss can say so: weights that are not finite say it instead.
                if self.weights_are_finite():
                    raise
                raise self.diverged(epoch, (done + 1, done + chunk), "the weights") from None
            if int(first_bad) >= 0:
                raise self.diverged(epoch, (done + int(first_bad) + 1,) * 2, "the training loss")
            chunk_loss = float(total)
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
            if not data_lib.is_data_mismatch(str(exc)):  # not the data: say what TensorFlow said
                raise UsageError(f"training failed in epoch {epoch}: {first_line(exc)}") from None
            raise DataError(
                f"the records in {data_dir} do not match vocab.json / manifest.json: {first_line(exc)}"
            ) from None
        except tf.errors.DataLossError as exc:  # a shard damaged after data.load checked it
            raise DataError(
                f"a shard in {data_dir} is damaged: {first_line(exc)}; {RERUN}"
            ) from None
        metrics = {
            "loss": loss_sum / steps.per_epoch,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "examples_per_second": steps.per_epoch * steps.global_batch / max(elapsed, 1e-9),
        }
        if steps.has_validation:
            metrics.update(self.validation_metrics(sums))
            if not math.isfinite(metrics["val_loss"]):
                last = (steps.per_epoch, steps.per_epoch)
                raise self.diverged(epoch, last, "the validation loss")
        return metrics

    def weights_are_finite(self) -> bool:
        return all(
            bool(tf.reduce_all(tf.math.is_finite(w))) for w in self.model.trainable_variables
        )

    def diverged(self, epoch: int, steps: tuple[int, int], what: str) -> UsageError:
        """The one line that stops a job whose loss stopped being a number: where (a step, or the
        steps of the chunk it happened in), at which learning rate, and that the backup still
        holds the last finished epoch."""
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        first, last = ((epoch - 1) * self.steps.per_epoch + step for step in steps)
        where = (
            f"at step {first:,} (epoch {epoch}, step {steps[0]} of {self.steps.per_epoch})"
            if first == last
            else f"within steps {first:,}-{last:,} (epoch {epoch}, steps {steps[0]}-{steps[1]} "
            f"of {self.steps.per_epoch})"
        )
        kept = f"epoch {epoch - 1}" if epoch > 1 else "no epoch yet"
        return UsageError(
            f"training diverged: {what} became infinite or not a number {where} at learning rate "
            f"{rate:.4g}; the backup keeps {kept}: start again with a lower --learning-rate"
        )

    def validation_metrics(self, sums=None) -> dict[str, float]:
        """Validation loss, accuracy, top-5 accuracy and perplexity (and, for a ``sequence`` model,
        the same over every position), and bits per beat and per note (:mod:`trainer.bits_per_beat`)
        from ``eval_steps``' sums (one validation pass of the model as it is now when none are
        given)."""
        if sums is None:
            sums = self.eval_steps(
                iter(self.validation), tf.constant(self.steps.validation)
            ).numpy()
        return with_bits(validation_metrics(sums), self.rate)

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
            save_model(
                self.model,
                self.outputs.path(
                    "checkpoints", f"weights-improvement-{epoch:02d}-{loss:.4f}.keras"
                ),
            )
        val_loss = metrics.get("val_loss")
        if val_loss is not None and val_loss < backup.best_val_loss.numpy():
            backup.best_val_loss.assign(val_loss)
            save_model(
                self.model, self.outputs.path("checkpoints", val_checkpoint_name(epoch, val_loss))
            )
            self.best.keep(self.model, epoch, metrics)

    def log_sample(self, epoch: int) -> None:
        # on every worker: reading distributed variables may be a collective
        weights = self.model.get_weights()
        if self.chief:
            with self.writer.as_default():
                self.samples.log(weights, step=epoch)
            self.writer.flush()
