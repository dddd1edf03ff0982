"""The preprocessing job's side of the file system, through Beam's ``FileSystems`` (local, gs://, ...).

Which files ``--input`` names, how many shards an input of that size deserves, making ``--output``
ready (and safe: an old manifest goes first), and the small JSON files the last step writes. All of
it runs in the launching process before the graph is built, or in the one ``WriteOutputs`` step, and
turns file-system failures into :class:`PipelineError` sentences.
"""

from __future__ import annotations

import math
import posixpath
import re

from apache_beam.io.filesystems import FileSystems

from preprocessing import records
from preprocessing.errors import first_line

MIDI_EXTENSIONS = (".mid", ".midi")
TARGET_SHARD_BYTES = 64 * 2**20
"""Aim for shards of about 64 MiB (uncompressed), so tf.data can interleave many on a large dataset."""
MAX_SHARDS = 1024
ESTIMATED_MIDI_BYTES_PER_TOKEN = 6.0
"""Measured on the embedded dataset (multi-track MIDI rendered by music21); only sizes the shards."""
WRITE_PROBE = ".lstm-composer-write-test"


class PipelineError(RuntimeError):
    """A problem with the job's flags, input or output, reported as one sentence instead of a traceback."""


def input_pattern(input_arg: str) -> tuple[str, str]:
    """The Beam match pattern for ``--input`` and the folder that file keys are relative to."""
    if re.search(r"[*?\[]", input_arg):
        prefix = re.match(r"^[^*?\[]*", input_arg).group(0)
        return input_arg, prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""
    if input_arg.lower().endswith(MIDI_EXTENSIONS):
        return input_arg, input_arg[: input_arg.rfind("/") + 1] if "/" in input_arg else ""
    root = input_arg.rstrip("/") + "/"
    return root + "**", root


def is_midi_path(path: str) -> bool:
    return path.lower().endswith(MIDI_EXTENSIONS)


def file_key(path: str, root: str) -> str:
    """A file's path relative to the input folder, with forward slashes: what the split hashes."""
    path = path.replace("\\", "/")
    root = root.replace("\\", "/")
    return path[len(root):].lstrip("/") if root and path.startswith(root) else posixpath.basename(path)


def match_inputs(pattern: str) -> list:
    """List the MIDI files up front: to fail fast when there are none, and to size the shards."""
    try:
        (result,) = FileSystems.match([pattern])
    except Exception as exc:  # noqa: BLE001 - BeamIOError wraps the file system's own error
        raise PipelineError(f"cannot list --input {pattern}: {exc}") from exc
    files = [m for m in result.metadata_list if is_midi_path(m.path)]
    if not files:
        raise PipelineError(
            f"no MIDI files (*.mid, *.midi) match --input {pattern}; "
            "give a folder of MIDI files or a glob such as 'gs://bucket/midi/**.mid'"
        )
    return files


def choose_num_shards(total_midi_bytes: int, sequence_length: int, stride: int) -> int:
    """Train shards for an input of this size: about TARGET_SHARD_BYTES each, between 1 and MAX_SHARDS."""
    tokens = total_midi_bytes / ESTIMATED_MIDI_BYTES_PER_TOKEN
    record_bytes = 2 * sequence_length + 32  # varint ids below 16384 take 2 bytes, plus framing
    estimated = tokens / stride * record_bytes
    return max(1, min(MAX_SHARDS, math.ceil(estimated / TARGET_SHARD_BYTES)))


def validation_shards(train_shards: int, validation_fraction: float) -> int:
    """Validation shards in proportion to the train shards (at least one)."""
    if validation_fraction == 0:
        return 1
    return max(1, math.ceil(train_shards * validation_fraction / (1 - validation_fraction)))


def prepare_output(output: str) -> None:
    """Make sure ``--output`` can be written, and remove what an earlier run there left.

    The old manifest goes first, so a run that dies midway can never leave a folder that looks
    finished; old shards go too, so they cannot be mixed up with this run's.
    """
    probe = records.join(output, WRITE_PROBE)
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as exc:  # noqa: BLE001
        raise PipelineError(f"cannot write to --output {output}: {first_line(exc)}") from exc
    stale = [records.join(output, records.MANIFEST_FILE)]
    for split in records.SPLITS:
        (match,) = FileSystems.match([records.join(output, f"{split}-*-of-*.tfrecord*")])
        stale += [m.path for m in match.metadata_list]
    stale = [path for path in stale if FileSystems.exists(path)]
    if stale:
        FileSystems.delete(stale)


def write_text(path: str, text: str) -> str:
    """Write one small text file through Beam's FileSystems (local, gs://, ...); returns its path."""
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write(text.encode("utf-8"))
    return path


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")
