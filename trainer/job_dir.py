"""The job directory: where a training job writes, and which worker writes there.

::

    checkpoints/  weights-improvement-{epoch:02d}-{loss:.4f}.keras   (best by training loss, as
                                                                       the reference)
                  val-improvement-{epoch:02d}-{val_loss:.4f}.keras   (best by validation loss)
    backup/       tf.train.CheckpointManager: model, optimizer, epoch, best losses (pre-emption),
                  and run.json: the run they belong to (:mod:`trainer.resume`)
    logs/         TensorBoard event files
    model/        what generation needs (:mod:`trainer.export` owns its contents)

On Vertex AI, ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR`` and ``AIP_TENSORBOARD_LOG_DIR`` override the
``model/``, ``checkpoints/`` and ``logs/`` folders (``backup/`` then lives beside the checkpoints
when no ``--job-dir`` is given). Every worker takes part in every save, because reading distributed
variables can be a collective, but only the chief saves into these folders; the others save into a
temporary folder of their own, deleted when the job ends.

``--replace-run`` sets a different run aside (:func:`set_aside`): the files directly in each of the
four folders move into a ``previous-run-TIME/`` subfolder of it, so nothing is deleted, TensorBoard
shows the old curves as a run of their own, and the new run starts in folders that look fresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence

from preprocessing.messages import first_line
from preprocessing.records import join
from trainer.flags import UsageError


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the job writes; see the module docstring."""

    checkpoints: str
    backup: str
    logs: str
    model: str


def resolve_layout(job_dir: str | None, env: Mapping[str, str]) -> Layout:
    """The output folders from ``--job-dir`` and Vertex AI's ``AIP_*_DIR`` variables (which win)."""
    aip_model, aip_ckpt, aip_logs = (
        env.get(k) or None
        for k in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR")
    )
    if not job_dir and not (aip_model and aip_ckpt and aip_logs):
        raise UsageError(
            "--job-dir is required (or all of AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR, "
            "as Vertex AI sets them)"
        )
    checkpoints = aip_ckpt or join(job_dir, "checkpoints")
    return Layout(
        checkpoints=checkpoints.rstrip("/"),
        backup=join(job_dir, "backup") if job_dir else join(checkpoints, "backup"),
        logs=(aip_logs or join(job_dir, "logs")).rstrip("/"),
        model=(aip_model or join(job_dir, "model")).rstrip("/"),
    )


def check_writable(paths: Sequence[str]) -> None:
    """Make each folder and write and delete a probe file in it; one clear :class:`UsageError` if
    any fails, after removing the (empty, local) folders this call made, so a refused job leaves
    none."""
    import tensorflow as tf

    made: list[str] = []
    for path in paths:
        probe = join(path, f".write-probe-{os.getpid()}")
        try:
            made += _missing_local_folders(path)
            tf.io.gfile.makedirs(path)
            with tf.io.gfile.GFile(probe, "w") as f:
                f.write("ok")
            tf.io.gfile.remove(probe)
        except (tf.errors.OpError, OSError) as exc:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only if still empty
            raise UsageError(
                f"cannot write to the job directory {path}: {first_line(exc)}"
            ) from None


def set_aside(layout: Layout, when: float | None = None) -> str:
    """Move the files directly in each folder of ``layout`` into its ``previous-run-TIME/``
    subfolder.

    Only files move (earlier ``previous-run-*`` folders, and ``backup/`` when it lies inside
    ``checkpoints/``, stay where they are). Returns the subfolder's name. Only the chief calls this.
    """
    import tensorflow as tf

    base = name = time.strftime("previous-run-%Y%m%dT%H%M%SZ", time.gmtime(when))
    folders = [layout.backup, layout.checkpoints, layout.logs, layout.model]
    count = 1
    while any(tf.io.gfile.exists(join(folder, name)) for folder in folders):
        count += 1
        name = f"{base}-{count}"
    for folder in folders:
        if not tf.io.gfile.isdir(folder):
            continue
        files = [
            f
            for f in tf.io.gfile.listdir(folder)
            if not tf.io.gfile.isdir(join(folder, f.rstrip("/")))
        ]
        if files:
            tf.io.gfile.makedirs(join(folder, name))
        for entry in files:
            tf.io.gfile.rename(join(folder, entry), join(join(folder, name), entry))
    return name


def _missing_local_folders(path: str) -> list[str]:
    """The local folders that making ``path`` would create, outermost first (none for gs:// and
    the like)."""
    if "://" in path:
        return []
    missing = []
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]


class WorkerOutputs:
    """Where this worker writes: the real folders on the chief, a local temporary folder
    elsewhere."""

    def __init__(self, layout: Layout, chief: bool, name: str):
        self.layout, self.chief = layout, chief
        self._tmp = None if chief else tempfile.mkdtemp(prefix=f"lstm-composer-{name}-")

    def path(self, folder: str, name: str | None = None) -> str:
        base = getattr(self.layout, folder) if self.chief else os.path.join(self._tmp, folder)
        return join(base, name) if name else base

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> WorkerOutputs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
