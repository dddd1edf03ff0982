"""The backup a killed job resumes from: model, optimizer, the finished epoch and the best losses.

Saved after every finished epoch (a ``tf.train.CheckpointManager`` in ``backup/``), with the
fingerprint of the run that made it beside it (``run.json``, :mod:`trainer.resume`, which decides
whether a backup is this run's). A restarted job restores it and goes on with the next epoch, so a
job loses at most the epoch it was in. Every worker takes part in every save (reading distributed
variables can be a collective); only the chief's lands in the job directory
(:mod:`trainer.job_dir`).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from preprocessing.messages import first_line
from trainer import resume
from trainer.flags import UsageError
from trainer.job_dir import WorkerOutputs, set_aside
from trainer.progress import log


class Backup:
    """Model, optimizer, the finished epoch and the best losses, saved after every epoch, with the
    fingerprint of the run that made them (:mod:`trainer.resume`) beside them."""

    def __init__(self, model, backup_dir: str, outputs: WorkerOutputs, run: dict[str, Any]):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_loss")
        self.best_val_loss = tf.Variable(
            math.inf, dtype=tf.float64, trainable=False, name="best_val_loss"
        )
        self.optimizer = model.optimizer
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=model.optimizer,
            epoch=self.epoch,
            best_loss=self.best_loss,
            best_val_loss=self.best_val_loss,
        )
        self.backup_dir = backup_dir
        self.outputs = outputs
        self.run = run
        # made once the old backup is settled
        self.manager: tf.train.CheckpointManager | None = None

    @property
    def finished_epochs(self) -> int:
        return int(self.epoch.numpy())

    def restore(self, *, replace: bool = False) -> None:
        """Check the chief's backup against this run, before anything is restored, then resume
        it, set it aside (``--replace-run``, the chief only) or refuse it. Every worker reads the
        chief's folder, so all take the same decision (a worker that reads after the chief set it
        aside finds none)."""
        latest = tf.train.latest_checkpoint(self.backup_dir)
        recorded = resume.read(self.backup_dir) if latest else None
        plan = resume.plan(recorded, self.run, has_backup=bool(latest), replace=replace)
        if plan.action == "refuse":
            raise UsageError(resume.refusal(self.backup_dir, plan.conflicts))
        if plan.action == "replace":
            if self.outputs.chief:
                why = (
                    f"a different run ({resume.describe(plan.conflicts)})"
                    if plan.recorded
                    else "a run without run.json"
                )
                aside = set_aside(self.outputs.layout)
                log(
                    f"{resume.REPLACE_FLAG}: the backup {latest} is of {why}; moved that run's files into "
                    f"{aside}/ in backup/, checkpoints/, logs/ and model/; starting at epoch 1"
                )
        elif plan.action == "resume":
            if replace:
                log(f"{resume.REPLACE_FLAG}: the backup {latest} is of this same run; resuming it")
            self._resume(latest, plan)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory=self.outputs.path("backup"), max_to_keep=2
        )

    def _resume(self, latest: str, plan: resume.Plan) -> None:
        if not plan.recorded:
            log(
                f"warning: the backup {latest} has no {resume.FILE} (an earlier version made it), so its data and "
                f"flags cannot be checked; resuming it as this run. If it is not, add {resume.REPLACE_FLAG}"
            )
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
        log(
            f"resuming from backup {latest}: epoch {done} finished, continuing with epoch {done + 1}"
        )
        for line in resume.change_lines(plan.changes):
            log(line)

    def save(self, epoch: int) -> None:
        """The run's fingerprint, then the checkpoint: no checkpoint is newer than the
        ``run.json`` beside it."""
        self.epoch.assign(epoch)
        resume.write(self.outputs.path("backup"), self.run)
        self.manager.save(checkpoint_number=epoch)
