"""Small helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

TINY = ["--units", "16", "--layers", "2", "--dense-units", "16", "--embedding-dim", "8", "--dropout", "0.1", "--seed", "3"]
"""Trainer flags for a tiny network: tests train in seconds."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``logdir``, read back with TensorBoard's own reader.

    Sample summaries (``sample/*``: images, audio, text) are left out; tests read those directly.
    """
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return {
        tag: sorted((e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag))
        for tag in acc.Tags()[event_accumulator.TENSORS]
        if not tag.startswith("sample/")
    }


def is_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie that someone else must reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until_gone(pid: int, seconds: float = 60.0) -> bool:
    """Poll until ``pid`` has exited or ``seconds`` have passed; True if it has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not is_gone(pid):
        time.sleep(0.05)
    return is_gone(pid)
