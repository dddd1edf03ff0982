"""What a pipeline output stores, read back for tests: its spans, and the windows they hold."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

from preprocessing import examples, records, windowing


def tfrecords(path: Path):
    """The records of one TFRecord file (8-byte length, 4-byte CRC, data, 4-byte CRC), gzip or
    not, read without TensorFlow."""
    data, position = path.read_bytes(), 0
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    while position < len(data):
        length = int.from_bytes(data[position : position + 8], "little")
        yield data[position + 12 : position + 12 + length]
        position += 16 + length


def spans_in(out: Path, manifest: records.Manifest, split: str) -> list[list[int]]:
    """Every span of one split, decoded with plain protobuf from the shards."""
    return [
        examples.decode_span(record)
        for name in manifest.shards(split)
        for record in tfrecords(out / name)
    ]


def windows_in(out: Path, manifest: records.Manifest, split: str) -> Counter:
    """The windows ``(inputs, target)`` at stride 1 that one split's spans hold."""
    return Counter(
        (tuple(inputs), target)
        for span in spans_in(out, manifest, split)
        for inputs, target in windowing.windows(span, manifest.sequence_length)
    )


def trainer_windows(out: Path, split: str) -> Counter:
    """One split's windows as the trainer's tf.data input reads them (every one, unshuffled)."""
    from trainer import data as data_lib

    inputs, targets = data_lib.numpy_windows(data_lib.load(str(out)), split)
    return Counter((tuple(row), int(t)) for row, t in zip(inputs.tolist(), targets.tolist()))
