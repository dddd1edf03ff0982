"""The shard files' bytes: how the pipeline builds them, and what a reader checks them against.

The pipeline writes every shard itself instead of through Beam's ``WriteToTFRecord``, because that
sink returns only paths and deals records to shards at random: it can say neither how many records
a shard holds nor what its bytes are. Here each record carries a stable key (:func:`record_key`);
the key picks its shard and orders the records within it, so a shard's bytes depend on the input
alone, and the step that builds a shard in memory knows its size, record count and hashes for free
(no second pass over the data, on any runner). The manifest lists them (:class:`records.Shard`).

The reader (:func:`preprocessing.reader.verify`) checks every listed shard before the trainer's
first step: present, of the listed size, and of the listed content, by default a hash of the first
and last :data:`EDGE_BYTES` of each shard (:func:`edge_ranges`: one definition for both sides).

TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) is written
here with ``google_crc32c`` (a dependency of Beam's GCP I/O); tests check the bytes against
TensorFlow's own ``TFRecordWriter``. This module never imports TensorFlow.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import uuid
from collections.abc import Iterable

from preprocessing import records
from preprocessing.records import Shard

EDGE_BYTES = 64 * 1024
"""The default check hashes this many bytes at each end of a shard."""
GZIP_LEVEL = 6
"""zlib's default level, as Beam's gzip sink used: level 9 costs far more time for a few per
cent."""


# --------------------------------------------------------------------------- writing (Beam workers)


def new_run_id() -> str:
    """A short random id that every shard name of one pipeline run carries."""
    return uuid.uuid4().hex[:8]


def record_key(piece_key: str, index: int) -> int:
    """A stable 64-bit key of a piece's ``index``-th record (its span): it picks the shard and the
    order within it.

    A hash, not the record's bytes, so that a shard is not sorted by its first token (the trainer's
    shuffle buffer would then mix only neighbours), and the spans of one piece spread out over the
    shards.
    """
    text = f"{piece_key}\0{index}"
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(keyed: tuple[int, bytes], total: int) -> tuple[int, tuple[int, bytes]]:
    """``(record key, record)`` → ``(shard index, (record key, record))``."""
    return keyed[0] % total, keyed


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record in TFRecord framing (see tensorflow/core/lib/io/record_writer.cc)."""
    length = struct.pack("<Q", len(record))
    return b"".join(
        (
            length,
            struct.pack("<I", _masked_crc32c(length)),
            record,
            struct.pack("<I", _masked_crc32c(record)),
        )
    )


def shard_bytes(ordered: Iterable[bytes], compression: str) -> bytes:
    """The file's bytes: the records framed, in order, then gzipped (no time stamp) for ``gzip``."""
    raw = b"".join(frame(record) for record in ordered)
    if records.tf_compression_type(compression) == "GZIP":
        return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
    return raw


def edge_ranges(size: int) -> list[tuple[int, int]]:
    """The ``(offset, length)`` ranges the default check hashes: the whole file when it is small."""
    if size <= 2 * EDGE_BYTES:
        return [(0, size)]
    return [(0, EDGE_BYTES), (size - EDGE_BYTES, EDGE_BYTES)]


def describe(name: str, data: bytes, count: int) -> Shard:
    """The manifest's entry for a shard of ``count`` records whose file holds ``data``."""
    edges = hashlib.sha256()
    for offset, length in edge_ranges(len(data)):
        edges.update(data[offset : offset + length])
    return Shard(
        name=name,
        size=len(data),
        records=count,
        sha256=hashlib.sha256(data).hexdigest(),
        edges_sha256=edges.hexdigest(),
    )


def build(name: str, keyed: Iterable[tuple[int, bytes]], compression: str) -> tuple[bytes, Shard]:
    """One shard's bytes and entry from its ``(record key, record)`` pairs, in any order.

    Sorted by key (then bytes), so a rerun on the same input writes the same bytes whichever worker
    or bundle delivered the records.
    """
    ordered = [record for _, record in sorted(keyed)]
    data = shard_bytes(ordered, compression)
    return data, describe(name, data, len(ordered))
