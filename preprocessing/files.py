"""The preprocessing job's side of the file system, through Beam's ``FileSystems`` (local, gs://,
...).

Which files ``--input`` names, how many shards an input of that size deserves, making ``--output``
ready, writing a shard's bytes, and the last step's files: the small JSON files published under
temporary names and renamed (the manifest last), then the replaced output's shards removed. A
finished output in ``--output`` stays readable until a new one replaces it. All of it runs in the
launching process before the graph is built, in the shard writers, or in the one ``WriteOutputs``
step, and turns file-system failures before the run into :class:`PipelineError` sentences.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
from collections.abc import Iterable, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from preprocessing import records
from preprocessing.messages import first_line

MIDI_EXTENSIONS = (".mid", ".midi")
TARGET_SHARD_BYTES = 64 * 2**20
"""Aim for shards of about 64 MiB (uncompressed), so tf.data can interleave many on a large
dataset."""
MAX_SHARDS = 1024
ESTIMATED_MIDI_BYTES_PER_TOKEN = 6.0
"""Measured on the embedded dataset (multi-track MIDI rendered by music21); only sizes the
shards."""
WRITE_PROBE = ".lstm-composer-write-test"
BEAM_TEMP = "beam-temp-"
TEMP_SUFFIX = ".tmp"
LOGGER = logging.getLogger("preprocessing.pipeline")


class PipelineError(RuntimeError):
    """A problem with the job's flags, input or output, reported as one sentence instead of a
    traceback."""


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
    return (
        path[len(root) :].lstrip("/")
        if root and path.startswith(root)
        else posixpath.basename(path)
    )


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
    """Train shards for an input of this size: about TARGET_SHARD_BYTES each, between 1 and
    MAX_SHARDS.

    A span of ``sequence_length + stride`` tokens starts every ``stride`` tokens (a shard is built
    in memory, so the estimate keeps it near the target size); ``--transpose`` stores nothing
    more."""
    tokens = total_midi_bytes / ESTIMATED_MIDI_BYTES_PER_TOKEN
    # varint ids below 16384 take 2 bytes, plus the record's framing
    span_bytes = 2 * (sequence_length + stride) + 32
    estimated = tokens / stride * span_bytes
    return max(1, min(MAX_SHARDS, math.ceil(estimated / TARGET_SHARD_BYTES)))


def validation_shards(train_shards: int, validation_fraction: float) -> int:
    """Validation shards in proportion to the train shards (at least one)."""
    if validation_fraction == 0:
        return 1
    return max(1, math.ceil(train_shards * validation_fraction / (1 - validation_fraction)))


def prepare_output(output: str) -> None:
    """Make sure ``--output`` can be written, and remove the ``beam-temp-*`` folders of interrupted
    runs.

    It deletes nothing else: a finished output there (its manifest, shards and vocabulary) stays
    readable until this run's manifest replaces it (:func:`publish`, then :func:`remove_stale`).
    """
    if _is_local(output) and os.path.isfile(output):
        raise PipelineError(
            f"--output {output} is a file, not a folder; give the folder to write into"
        )
    probe = records.join(output, WRITE_PROBE)
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as exc:  # noqa: BLE001
        raise PipelineError(f"cannot write to --output {output}: {first_line(exc)}") from exc
    stale = beam_temp_folders(output)
    if stale:
        # A folder on a local disk is deleted whole; an object store's "folder" is a prefix.
        FileSystems.delete([path if _is_local(output) else path + "/" for path in stale])


def _is_local(path: str) -> bool:
    return "://" not in path


def beam_temp_folders(output: str) -> list[str]:
    """The ``beam-temp-*`` folders in ``output``: what Beam's file sinks leave behind when a run
    dies."""
    prefix = records.join(output, BEAM_TEMP)
    (match,) = FileSystems.match([prefix + "**"])
    folders = {
        prefix + m.path[len(prefix) :].split("/", 1)[0]
        for m in match.metadata_list
        if "/" in m.path[len(prefix) :]
    }
    # a local match lists files only: add empty folders
    if _is_local(output) and os.path.isdir(output):
        folders |= {
            records.join(output, n)
            for n in os.listdir(output)
            if n.startswith(BEAM_TEMP) and os.path.isdir(os.path.join(output, n))
        }
    return sorted(folders)


def write_bytes(path: str, data: bytes) -> str:
    """Write one file in one go, exactly these bytes (no compression by its name's extension)."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    return path


def publish(output: str, texts: Sequence[tuple[str, str | bytes]], run_id: str) -> None:
    """Write each ``(file name, text or bytes)`` under a temporary name, then rename them in order.

    Give the manifest last: a reader then never sees half a manifest (a rename replaces a file
    whole), and the files before it are in place when it lands. Between their renames the old
    manifest sits beside the new ``vocab.json`` for an instant; the trainer refuses that pair (the
    vocabulary hash), it never reads it.
    """
    moves = []
    for name, text in texts:
        temporary = records.join(output, f"{name}.{run_id}{TEMP_SUFFIX}")
        if isinstance(text, bytes):
            write_bytes(temporary, text)
        else:
            write_text(temporary, text)
        moves.append((temporary, records.join(output, name)))
    for temporary, final in moves:
        FileSystems.rename([temporary], [final])


def remove_stale(
    output: str, keep: Iterable[str], published: Sequence[str] = (), replaced: Sequence[str] = ()
) -> list[str]:
    """After a manifest landed: delete every shard (and temporary file) in ``output`` it does not
    list.

    Those are the replaced output's shards and what interrupted runs left (``published`` names the
    files :func:`publish` wrote besides the three JSON ones, whose temporary names go too).
    ``replaced`` names files an output of another kind writes and this one does not (another
    encoding's saved tokenizer): they go too, so nothing in the folder contradicts the new manifest.
    Returns what it deleted; a failure is logged, not raised (the new output is finished; the next
    run tries again).
    """
    keep = set(keep)
    patterns = [records.shard_pattern(split) for split in records.SPLITS]
    published = (records.DEAD_LETTER_FILE, records.VOCAB_FILE, *published, records.MANIFEST_FILE)
    patterns += [f"{name}.*{TEMP_SUFFIX}" for name in published]
    patterns.append(records.FAILED_RUN_PATTERN)  # the reports of failed runs before this one
    patterns += [name for name in replaced if name not in published]
    try:
        matches = FileSystems.match([records.join(output, pattern) for pattern in patterns])
        stale = sorted(
            {
                m.path
                for match in matches
                for m in match.metadata_list
                if posixpath.basename(m.path.replace("\\", "/")) not in keep
            }
        )
        if stale:
            FileSystems.delete(stale)
    except Exception as exc:  # noqa: BLE001
        LOGGER.warning(
            "could not remove the replaced files in %s (the next run will): %s",
            output,
            first_line(exc),
        )
        return []
    return stale


def report_failure(
    output: str,
    run_id: str,
    manifest: records.Manifest,
    dead_letters: Sequence[dict],
    reason: str | None = None,
) -> str:
    """A run that cannot publish: delete its own shards, and write what it would have published
    (manifest and dead letters) to its report, :func:`records.failed_run_report`, with the
    ``reason`` when it is not the lack of training windows; returns its path. Nothing else in
    ``output`` is touched."""
    own = [records.join(output, f"{split}-{run_id}-*") for split in records.SPLITS]
    try:
        written = [m.path for match in FileSystems.match(own) for m in match.metadata_list]
        if written:
            FileSystems.delete(written)
    except Exception as exc:  # noqa: BLE001 - the report matters more; the next run removes them
        LOGGER.warning(
            "could not remove the failed run's shards in %s: %s", output, first_line(exc)
        )
    document = {
        "manifest": json.loads(records.manifest_to_json(manifest)),
        "dead_letters": dead_letters,
        **({"reason": reason} if reason else {}),
    }
    path = records.join(output, records.failed_run_report(run_id))
    return write_text(path, json.dumps(document, indent=2, sort_keys=True))


def write_text(path: str, text: str) -> str:
    """Write one small text file through Beam's FileSystems (local, gs://, ...); returns its
    path."""
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write(text.encode("utf-8"))
    return path


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")
