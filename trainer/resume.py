"""What a backup was made by, so that a job started again resumes only the run it belongs to.

The backup (``backup/``) holds a model and its optimizer after some epochs, and a job started again
into the same job directory goes on from there. Without a record of what made it, a restart with
another data folder or other flags trained on: ids that now meant other notes, windows of another
length, an exported ``model/`` describing data the first epochs never saw. So every save writes
``run.json`` beside the checkpoints (a *fingerprint*: a plain dict), and a restart compares it with
its own before it restores anything.

* :data:`MUST_MATCH`: what the weights mean. The data's token encoding, sequence length and
  vocabulary (its size and hash: the same id must mean the same token) and every flag that shapes
  the network. A restart that differs in any is refused with one line naming each difference.
* :data:`MAY_CHANGE`: how training goes on. The flags that take effect on resume (the command line
  of the restarted job is the truth), and what else the data folder says (windows, stride, parts).
  Each change is logged once.
* Not recorded: ``--job-dir`` (it holds the backup), ``--distribute`` (a job may resume on another
  cluster), ``--replace-run``, ``--verify-shards`` (how the data is checked); ``--verbose`` keeps no
  value (it sets the environment).

``--seed`` and ``--batch-size`` may change: the seed only sets the initial weights (replaced by the
backup) and the shuffle order; the batch size is not part of any weight or optimizer slot, and a
job moved to more GPUs may want a larger one. ``--dropout`` must match although it shapes no
weight: it is part of the network that ``model/model.keras`` records.

The decision (:func:`plan`) and the messages are pure; :func:`read` and :func:`write` are the thin
``tf.io.gfile`` adapters (local, ``gs://``, ``ram://``), TensorFlow imported when they run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from preprocessing.messages import first_line
from preprocessing.records import TRAIN, VALIDATION, Manifest, join
from trainer.flags import UsageError

FILE = "run.json"
VERSION = 1

DATA_MUST_MATCH = ("encoding", "sequence_length", "vocab_size", "vocab_hash")
FLAGS_MUST_MATCH = (
    "model",
    "objective",
    "units",
    "layers",
    "dense_units",
    "embedding_dim",
    "dropout",
)
FLAGS_MAY_CHANGE = (
    "learning_rate",
    "lr_schedule",
    "epochs",
    "batch_size",
    "seed",
    "shuffle_buffer",
    "steps_per_epoch",
    "validation_steps",
    "baseline_windows",
    "sample_every",
    "data_dir",
)
DATA_MAY_CHANGE = ("stride", "layout", "transpose", "parts", "train_windows", "validation_windows")
RECORDED_BEFORE = {"objective": "last", "layout": "windows"}
"""What a ``run.json`` written before these keys existed meant by leaving them out: the notebook's
objective, on stored windows."""
MUST_MATCH = DATA_MUST_MATCH + FLAGS_MUST_MATCH
MAY_CHANGE = FLAGS_MAY_CHANGE + DATA_MAY_CHANGE
FLAGS = FLAGS_MUST_MATCH + FLAGS_MAY_CHANGE
NOT_RECORDED = ("job_dir", "distribute", "replace_run", "verify_shards")
"""Every other flag of :func:`trainer.flags.build_parser` is in one of the lists above (a test
checks)."""

REPLACE_FLAG = "--replace-run"

Difference = tuple[str, Any, Any]  # (key, value in the backup's run.json, value of this run)


def fingerprint(manifest: Manifest, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The run a backup belongs to: the data (from its manifest) and the training flags (by dest
    name)."""
    run: dict[str, Any] = {
        "encoding": manifest.encoding,
        "sequence_length": manifest.sequence_length,
        "vocab_size": manifest.vocab_size,
        "vocab_hash": manifest.vocab_hash,
        "stride": manifest.stride,
        "layout": manifest.layout,
        "transpose": manifest.transpose,
        "parts": manifest.parts,
        "train_windows": manifest.windows(TRAIN),
        "validation_windows": manifest.windows(VALIDATION),
    }
    run.update({key: flags[key] for key in FLAGS})
    if run["model"] == "reference":
        # the reference network has no embedding: the flag shapes nothing
        run["embedding_dim"] = None
    return run


def differences(
    old: Mapping[str, Any], new: Mapping[str, Any], keys: Sequence[str]
) -> list[Difference]:
    """``(key, old, new)`` for each of ``keys`` whose value differs (a missing key counts as
    None)."""
    return [(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]


def label(key: str) -> str:
    """A flag as the user types it (``--dense-units``); a data field by its manifest name."""
    return "--" + key.replace("_", "-") if key in FLAGS else key


def show(value: Any) -> str:
    return "none" if value is None else str(value)


def describe(diffs: Sequence[Difference]) -> str:
    return "; ".join(f"{label(key)} {show(old)} → {show(new)}" for key, old, new in diffs)


@dataclass(frozen=True)
class Plan:
    """What to do with the backup found in the job directory.

    ``action``: ``fresh`` (there is none), ``resume``, ``replace`` (set the other run aside and
    start at epoch 1) or ``refuse``. ``recorded`` is False for a backup made before ``run.json``
    existed.
    """

    action: str
    conflicts: tuple[Difference, ...] = ()
    changes: tuple[Difference, ...] = ()
    recorded: bool = True


def plan(
    recorded: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    *,
    has_backup: bool,
    replace: bool,
) -> Plan:
    """Resume only the same run; a different one is refused, or replaced when ``--replace-run``
    asks.

    A backup without ``run.json`` (made by an earlier version) is resumed with a warning rather than
    refused: a pre-empted job is almost always started again with its own command line, and refusing
    would leave ``--replace-run`` (losing its epochs) as the only way on; the restore still refuses
    a change of weight shapes. With ``--replace-run`` it is set aside, as nothing shows it is this
    run. A backup of this same run is resumed even with ``--replace-run``, so a job submitted with
    the flag and restarted by its platform after its first save keeps its progress.
    """
    if not has_backup:
        return Plan("fresh")
    if recorded is None:
        return Plan("replace", recorded=False) if replace else Plan("resume", recorded=False)
    conflicts = tuple(differences(recorded, current, MUST_MATCH))
    if conflicts:
        return Plan("replace" if replace else "refuse", conflicts=conflicts)
    return Plan("resume", changes=tuple(differences(recorded, current, MAY_CHANGE)))


def refusal(backup_dir: str, conflicts: Sequence[Difference]) -> str:
    """The one line a restart of a different run stops with."""
    return (
        f"{backup_dir} holds the backup of a different run ({describe(conflicts)}): use another --job-dir, "
        f"or add {REPLACE_FLAG} to set that run aside and start this one at epoch 1"
    )


def change_lines(changes: Sequence[Difference]) -> list[str]:
    """One log line per value that differs from the backup's run and takes effect now."""
    return [
        f"{label(key)} {show(old)} → {show(new)} (changed on resume)" for key, old, new in changes
    ]


def to_json(run: Mapping[str, Any]) -> str:
    return json.dumps({"version": VERSION, "run": dict(run)}, indent=2, sort_keys=True)


def from_json(text: str) -> dict[str, Any]:
    """The fingerprint of a ``run.json``; ValueError when it is not one this version reads."""
    doc = json.loads(text)
    if (
        not isinstance(doc, dict)
        or doc.get("version") != VERSION
        or not isinstance(doc.get("run"), dict)
    ):
        raise ValueError(f"not a version {VERSION} run record")
    return {**RECORDED_BEFORE, **doc["run"]}


def read(backup_dir: str) -> dict[str, Any] | None:
    """The fingerprint in ``backup_dir``; None when there is none; one line when it cannot be
    read."""
    import tensorflow as tf

    path = join(backup_dir, FILE)
    try:
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "r") as f:
            return from_json(f.read())
    except (ValueError, tf.errors.OpError) as exc:
        raise UsageError(
            f"cannot read {path} ({first_line(exc)}), so the backup beside it cannot be checked: use another "
            f"--job-dir, or add {REPLACE_FLAG} to set that run aside and start this one at epoch 1"
        ) from None


def write(backup_dir: str, run: Mapping[str, Any]) -> None:
    """Write ``run.json`` whole or not at all (a temporary name, then a rename over the old one)."""
    import tensorflow as tf

    tf.io.gfile.makedirs(backup_dir)
    path = join(backup_dir, FILE)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(to_json(run))
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
