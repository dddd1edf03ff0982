"""The files of a composition: the primer a piece starts from, and the files it is written to.

A piece starts from the last window of a MIDI file (``--primer``, in the model's encoding) or from
a random window of the model folder's ``primers.json``, as the reference primes with a random data
window. It is written as the MIDI file (the encoding's ``decode``, the code that encodes; REMI from
MidiTok's saved tokenizer in ``model/``), a piano-roll PNG (:mod:`trainer.plots`), with ``--wav`` an
audio preview (:mod:`trainer.audio`), and a JSON summary beside it (:mod:`trainer.summary`). The
output and the primer are checked before the model is loaded (:func:`check_paths`), so a wrong path
never costs a composition. Paths go through ``tf.io.gfile`` (local, ``gs://``, ``ram://``).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from preprocessing import records
from preprocessing.encodings.base import Encoding
from preprocessing.encodings.midi_container import MidiParseError
from preprocessing.messages import first_line
from trainer import audio, plots
from trainer.export import Bundle
from trainer.summary import SampleSummary, summarize


class GenerateError(ValueError):
    """A problem with a path, the model folder's primers or the primer, reported as one sentence."""


# --------------------------------------------------------------------------- primers


def primer_from_midi(
    data: bytes,
    vocab: Sequence[str],
    sequence_length: int,
    parts: str,
    source: str,
    encoding: Encoding,
) -> list[int]:
    """The last window of a MIDI file's tokens in the model's ``encoding``. A learned token the
    model's vocabulary lacks is written as the base tokens it stands for (the same notes); a token
    that still is not in the vocabulary is skipped with a warning."""
    try:
        tokens = encoding.encode(data, parts)
    except MidiParseError as exc:
        raise GenerateError(f"--primer {source}: {exc}") from exc
    index = {token: i for i, token in enumerate(vocab)}
    known, skipped = [], 0
    for token in tokens:
        spelled = [token] if token in index else encoding.base_tokens([token])
        if all(part in index for part in spelled):
            known += [index[part] for part in spelled]
        else:
            skipped += 1
    if skipped:
        print(
            f"warning: --primer {source}: skipped {skipped} of {len(tokens)} tokens that are not in the "
            "model's vocabulary",
            file=sys.stderr,
        )
    if len(known) < sequence_length:
        raise GenerateError(
            f"--primer {source} has {len(known)} usable tokens; the model needs a window of {sequence_length}"
        )
    return known[-sequence_length:]


def choose_primers(
    bundle: Bundle, primer_path: str | None, samples: int, seed: int | None, encoding: Encoding
) -> np.ndarray:
    """``samples`` primer windows: the last window of ``--primer`` (in the model's ``encoding``), or
    random windows of the model folder's ``primers.json``, as the reference primes with a random
    window of its data."""
    if primer_path:
        check_primer(primer_path)
        try:
            with tf.io.gfile.GFile(primer_path, "rb") as f:
                data = f.read()
        except (tf.errors.OpError, OSError) as exc:
            raise GenerateError(f"cannot read --primer {primer_path}: {first_line(exc)}") from None
        window = primer_from_midi(
            data, bundle.vocab, bundle.sequence_length, bundle.manifest.parts, primer_path, encoding
        )
        return np.array([window] * samples, np.int64)
    if not bundle.primers:
        raise GenerateError("the model folder has no primers.json; give a MIDI file with --primer")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(bundle.primers), size=samples)  # a random window, as the reference
    return np.array([bundle.primers[i] for i in picks], np.int64)


def check_primer(primer_path: str) -> None:
    if not tf.io.gfile.exists(primer_path):
        raise GenerateError(f"--primer {primer_path} not found")
    if tf.io.gfile.isdir(primer_path):
        raise GenerateError(f"--primer {primer_path} is a folder; give one MIDI file")


# --------------------------------------------------------------------------- outputs


def check_paths(args: argparse.Namespace, output_flag: str | None = None) -> None:
    """The output and the primer, checked before the model is loaded (the quickstart checks them
    before its first stage, naming its own ``output_flag``)."""
    check_output(args.output, output_flag)
    check_overwrites(args.output, args.num_samples, args.model_dir, output_flag)
    if args.primer:
        check_primer(args.primer)


WRITTEN_BY = "lstm-composer generate"
"""The summary's ``written_by``: what marks a file set as an earlier output of this command."""
SUFFIXES = (".png", ".json", ".wav")
"""What is written beside each MIDI file (the ``.wav`` with ``--wav`` only)."""


def piece_files(output: str, samples: int) -> list[tuple[str, list[str]]]:
    """For each piece, its summary's path and every file it may write (MIDI, piano roll, summary,
    audio)."""
    pieces = []
    for path in output_paths(output, samples):
        stem = path[:-4] if path.lower().endswith(".mid") else path
        pieces.append((stem + ".json", [path, *(stem + suffix for suffix in SUFFIXES)]))
    return pieces


def is_earlier_output(summary_path: str) -> bool:
    """Whether ``summary_path`` is the summary this command writes (marked, or in the shape it had
    before the mark)."""
    try:
        with tf.io.gfile.GFile(summary_path, "r") as f:
            document = json.load(f)
    except (tf.errors.OpError, OSError, ValueError):
        return False
    if not isinstance(document, dict):
        return False
    return (
        document.get("written_by") == WRITTEN_BY
        or {
            "tokens",
            "distinct_tokens",
            "tokens_text",
        }
        <= document.keys()
    )


def check_overwrites(output: str, samples: int, model_dir: str, what: str | None = None) -> None:
    """Refuse, before composing, to write into the model folder or over a file that is not one of
    this command's own earlier outputs (a piece whose summary beside it says so): a mistyped
    ``--output`` must not replace ``model.keras`` or anything else the user keeps."""
    what = what or f"--output {output}"
    holds_a_model = any(
        tf.io.gfile.exists(records.join(model_dir, name))
        for name in ("model.keras", records.MANIFEST_FILE)
    )  # else loading the model says what is wrong with the folder
    if holds_a_model and _inside(output, model_dir):
        raise GenerateError(
            f"{what} is inside the model folder {model_dir}; write the piece somewhere else"
        )
    for summary_path, paths in piece_files(output, samples):
        existing = [path for path in paths if tf.io.gfile.exists(path)]
        if existing and not is_earlier_output(summary_path):
            raise GenerateError(
                f"{what} would overwrite {existing[0]}, which is not an earlier output of "
                f"{WRITTEN_BY} (no summary {summary_path} of one beside it); choose another name "
                "or move the file away"
            )


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` or below it (local paths resolved, URLs compared as
    written)."""
    if "://" in path or "://" in folder:
        return path.startswith(folder.rstrip("/") + "/")
    folder = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def _parent(path: str) -> str:
    return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


def write_bytes(path: str, data: bytes) -> None:
    parent = _parent(path)
    if parent and not tf.io.gfile.exists(parent):
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def check_output(output: str, what: str | None = None) -> None:
    """Refuse an ``--output`` that could not be written, before anything is composed, and leave no
    trace.

    A folder is refused by name. Locally, the nearest folder that already exists on the way to the
    file must be a folder (not a regular file) that takes a new file, which a probe file written and
    deleted there shows (permissions alone do not: root, read-only mounts); the missing folders
    below it are made only when the piece is written. Object stores have no folders to walk: the
    probe goes straight into the output's parent. ``what`` names the flag in messages.
    """
    what = what or f"--output {output}"
    if tf.io.gfile.isdir(output):
        raise GenerateError(
            f"{what} is a folder; give a file name such as {records.join(output, 'piece.mid')}"
        )
    folder = _parent(output) or "."
    if "://" not in output:
        while not tf.io.gfile.exists(folder) and folder not in (".", os.sep):
            folder = os.path.dirname(folder) or "."
        if not tf.io.gfile.isdir(folder):
            raise GenerateError(f"{what}: {folder} is a file, not a folder")
    probe = records.join(folder, f".lstm-composer-write-probe-{os.getpid()}")
    try:
        with tf.io.gfile.GFile(probe, "wb") as f:
            f.write(b"")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as exc:
        # TensorFlow's messages lead with the path
        reason = first_line(exc).removeprefix(f"{probe}; ")
        raise GenerateError(f"{what}: cannot write into {folder}: {reason}") from None


def png_bytes(image: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(image)).numpy()


def output_paths(output: str, samples: int) -> list[str]:
    stem = output[:-4] if output.lower().endswith(".mid") else output
    return [output if samples == 1 else f"{stem}-{i + 1}.mid" for i in range(samples)]


def write_sample(
    path: str, tokens: list[str], encoding: Encoding, title: str = "", wav: bool = False
) -> SampleSummary:
    """The MIDI file, its piano roll (``.png``), with ``wav`` its audio (``.wav``), and its summary
    (``.json``) side by side."""
    stem = path[:-4] if path.lower().endswith(".mid") else path
    events = encoding.note_events(tokens)
    write_bytes(path, encoding.decode(tokens))
    write_bytes(
        stem + ".png", png_bytes(plots.piano_roll(events, title=title or posixpath.basename(path)))
    )
    if wav:
        write_bytes(stem + ".wav", audio.wav_bytes(audio.synthesize(events)))
    summary = summarize(tokens, encoding)
    document = {
        "written_by": WRITTEN_BY,
        **summary.__dict__,
        "loop_share": summary.loop_share,
        "tokens_text": tokens,
    }
    write_bytes(stem + ".json", json.dumps(document, indent=1).encode())
    return summary


def write_piece(
    path: str, tokens: list[str], encoding: Encoding, title: str = "", wav: bool = False
) -> SampleSummary:
    """:func:`write_sample`, with a failed write as one :class:`GenerateError` line."""
    try:
        return write_sample(path, tokens, encoding, title, wav=wav)
    except (tf.errors.OpError, OSError) as exc:
        raise GenerateError(f"cannot write {path}: {first_line(exc)}") from None
