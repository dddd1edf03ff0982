"""Which epoch ``model/model.keras`` holds: the one with the lowest validation loss, not the last.

A high learning rate or an over-long job can make the last epoch worse than an earlier one, and the
exported model is what generation, ``evaluate`` and the quickstart's report use. So the epoch loop
keeps the best epoch's weights (:class:`BestEpoch`) and puts them back into the model just before
the export. Without validation windows there is no "best", and the last epoch is exported.

Distribution: ``model.get_weights()`` reads distributed variables, so every worker calls it at the
same epochs (every worker sees the same validation loss); ``set_weights`` assigns every replica.

A resumed job may find that the best epoch is one from before the restart. Its weights are not in
memory then, but the job wrote them: the ``val-improvement-{epoch:02d}-{val_loss:.4f}.keras`` file
in ``checkpoints/`` (written at every new best validation loss, by the chief; every worker reads the
chief's folder, as every worker reads the chief's backup). :func:`pick_checkpoint` chooses it: the
latest epoch not after the backup's, preferring the file whose loss is the backup's best.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

VAL_PATTERN = re.compile(r"^val-improvement-(\d+)-(\d+\.\d+)\.keras$")


def val_checkpoint_name(epoch: int, val_loss: float) -> str:
    return f"val-improvement-{epoch:02d}-{val_loss:.4f}.keras"


def pick_checkpoint(
    names: Iterable[str], finished_epochs: int, best_val_loss: float
) -> tuple[int, str] | None:
    """``(epoch, name)`` of the file holding the best weights of the first ``finished_epochs``
    epochs.

    Files of later epochs are ignored: a job killed between an improvement file and its backup left
    them, and it trains those epochs again. Among the rest, a file whose loss is ``best_val_loss``
    (as the name rounds it) wins; else the latest (each improvement file beats the ones before it).
    """
    found = [
        (int(m.group(1)), m.group(2), name) for name in names if (m := VAL_PATTERN.match(name))
    ]
    found = [row for row in found if row[0] <= finished_epochs]
    if not found:
        return None
    wanted = f"{best_val_loss:.4f}" if math.isfinite(best_val_loss) else None
    matching = [row for row in found if row[1] == wanted]
    epoch, _, name = max(matching or found)
    return epoch, name


def load_weights(path: str) -> list:
    """The weights of a saved ``.keras`` file (local, gs://), read as generation reads
    ``model/``."""
    from trainer.export import load_keras

    return load_keras(path).get_weights()


class BestEpoch:
    """The best epoch by validation loss seen by this process: its number, weights and metrics."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.weights: list | None = None
        self.metrics: dict[str, Any] | None = None

    def keep(self, model, epoch: int, metrics: dict[str, Any]) -> None:
        """Called on every worker at each new best validation loss (see the module docstring)."""
        self.epoch = epoch
        self.weights = model.get_weights()
        self.metrics = dict(metrics)

    def restore(
        self, model, *, last_epoch: int, checkpoints_dir: str, best_val_loss: float, log
    ) -> tuple[int, bool]:
        """Put the best weights into ``model``;
        ``(exported epoch, whether its metrics are known here)``.

        The last epoch stays when it is the best, when there was no validation, or (with a warning)
        when a best epoch from before a restart has no improvement file any more.
        """
        import tensorflow as tf

        if self.epoch is not None:
            if self.epoch != last_epoch:
                model.set_weights(self.weights)
            return self.epoch, True
        if not math.isfinite(best_val_loss):
            return last_epoch, False  # no validation: nothing to choose by
        names = tf.io.gfile.listdir(checkpoints_dir) if tf.io.gfile.isdir(checkpoints_dir) else []
        picked = pick_checkpoint(names, last_epoch, best_val_loss)
        if picked is None:
            log(
                f"warning: the best epoch (val_loss {best_val_loss:.4f}) came before the restart and no "
                f"val-improvement file of it is in {checkpoints_dir}; exporting the last epoch, {last_epoch}"
            )
            return last_epoch, False
        epoch, name = picked
        if epoch != last_epoch:
            model.set_weights(load_weights(f"{checkpoints_dir.rstrip('/')}/{name}"))
        return epoch, False
