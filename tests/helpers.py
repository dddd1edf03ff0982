"""Small helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket

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


def unwritable_folder(tmp_path) -> "Path | None":
    """A folder that really refuses a new file here, or None: a read-only folder for a normal user,
    ``/sys`` for root (whom permissions do not stop; sysfs takes no new files from anyone)."""
    import os
    from pathlib import Path

    folder = Path("/sys")
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    try:
        (folder / "probe").write_bytes(b"")
    except OSError:
        return folder
    (folder / "probe").unlink()
    return None
