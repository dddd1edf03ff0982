"""The learning rate over a job: ``--lr-schedule constant|cosine``. Pure; imports no TensorFlow.

``constant`` (the default, what every job did before the flag existed) keeps ``--learning-rate``
throughout. ``cosine`` warms up linearly over the first :data:`WARMUP_SHARE` of the job's steps,
then decays along half a cosine to :data:`FLOOR` times ``--learning-rate`` at the last step: a
short job can start with a high rate (fast early progress) and still end with small, careful steps,
which is where a fixed high rate leaves validation loss bouncing (``docs/PERFORMANCE.md`` has the
figures on the quickstart's data).

The epoch loop sets the optimizer's learning-rate variable from :func:`learning_rate_at` before
every chunk of steps (:mod:`trainer.progress`: at least ten per epoch), so the rate is a function of
the global step alone: a resumed job (whose step count is ``finished epochs x steps per epoch``)
continues on the same curve, and a restart with other ``--epochs`` or ``--learning-rate`` simply
follows the curve those values draw, from where it is.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")
WARMUP_SHARE = 0.05
"""Share of the job's steps spent warming up (``cosine``)."""
FLOOR = 0.05
"""The last step's rate as a share of ``--learning-rate`` (``cosine``)."""


def learning_rate_at(schedule: str, base: float, step: int, total: int) -> float:
    """The rate for global step ``step`` (0-based) of a job of ``total`` steps."""
    if schedule == "constant":
        return base
    if schedule != "cosine":
        raise ValueError(
            f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}"
        )
    total = max(1, total)
    warmup = math.ceil(WARMUP_SHARE * total)
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return base * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))
