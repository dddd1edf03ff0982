"""What the trainer says while it runs: its log lines, and progress inside an epoch.

Every line the trainer prints goes through :func:`log` (``trainer: ...``, flushed at once, so a
cloud job's log shows it as it happens). Progress inside an epoch: a Keras progress bar on a
terminal, a line now and then in a log.

A reference-size epoch takes tens of minutes on a CPU, so waiting for the epoch's end line is not
enough. The epoch loop runs its training steps in chunks (one ``tf.function`` call each, the step
count a tensor, so nothing is traced again) and reports after each chunk;
:meth:`EpochProgress.next_chunk` says how many steps the next chunk takes:

* **terminal** (``sys.stdout.isatty()``): Keras' ``Progbar``, updated about every
  :data:`BAR_SECONDS`, with the running loss and steps/s.
* **log** (a cloud job, a file, a pipe): one line per chunk, a chunk ending at the next 10 % of the
  epoch or after about :data:`LINE_SECONDS`, whichever comes first, e.g.
  ``trainer: epoch 3/10: step 120/400 (30 %), 12.5 steps/s, loss 2.3456``.

Chunks are sized from the steps/s measured on the last chunk (the first chunk is one step), so
they differ from machine to machine. With several workers every worker must run the same chunks
(each call runs the steps' collectives), so there they end only at the 10 % marks (``timed=False``).
Pure but for the clock and the output, both of which can be handed in.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

LINE_SECONDS = 30.0
BAR_SECONDS = 0.5
MARKS = 10
"""Log lines at least every 1/MARKS of the epoch."""


def log(message: str) -> None:
    """One line of the trainer's log, on stdout, flushed at once."""
    print(f"trainer: {message}", flush=True)


class EpochProgress:
    """The progress display of one epoch of ``total`` steps (see the module docstring)."""

    def __init__(
        self,
        epoch: int,
        epochs: int,
        total: int,
        *,
        terminal: bool,
        timed: bool = True,
        enabled: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        out: TextIO | None = None,
    ):
        self.epoch = epoch
        self.epochs = epochs
        self.total = max(1, total)
        self.terminal = terminal and enabled
        self.timed = timed
        self.enabled = enabled
        self.clock, self.out = clock, out
        self.mark = math.ceil(self.total / MARKS)
        self.done = 0
        self.loss_sum = 0.0
        self.rate = None
        self.started = self.last = clock()
        self.bar = None
        if self.terminal:
            import keras

            self.bar = keras.utils.Progbar(
                self.total, stateful_metrics=["loss", "steps/s"], unit_name="step"
            )

    def next_chunk(self) -> int:
        """Steps to run before the next report (at least 1, never past the epoch's end)."""
        remaining = self.total - self.done
        to_mark = min((self.done // self.mark + 1) * self.mark, self.total) - self.done
        if not self.timed:  # the same on every worker, whatever its clock or output says
            return to_mark
        seconds = BAR_SECONDS if self.terminal else LINE_SECONDS
        wanted = 1 if self.rate is None else int(self.rate * seconds)
        return max(1, min(remaining if self.terminal else to_mark, wanted))

    def update(self, steps: int, loss_sum: float) -> None:
        """``steps`` more steps done, whose losses add up to ``loss_sum``; report them."""
        now = self.clock()
        self.rate = steps / max(now - self.last, 1e-9)
        self.done += steps
        self.loss_sum += loss_sum
        self.last = now
        if not self.enabled:
            return
        loss = self.loss_sum / self.done
        if self.bar is not None:
            self.bar.update(self.done, values=[("loss", loss), ("steps/s", self.rate)])
            return
        print(
            f"trainer: epoch {self.epoch}/{self.epochs}: step {self.done}/{self.total} "
            f"({100 * self.done / self.total:.0f} %), {self.rate:.3g} steps/s, loss {loss:.4f}",
            file=self.out or sys.stdout,
            flush=True,
        )
