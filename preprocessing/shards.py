"""The shard files' bytes: how the pipeline builds them, and how a reader checks them before trusting them.

The pipeline writes every shard itself instead of through Beam's ``WriteToTFRecord``, because that
sink returns only paths and deals records to shards at random: it can say neither how many records
a shard holds nor what its bytes are. Here each window carries a stable key (:func:`window_key`);
the key picks its shard and orders the records within it, so a shard's bytes depend on the input
alone, and the step that builds a shard in memory knows its size, record count and hashes for free
(no second pass over the data, on any runner). The manifest lists them (:class:`records.Shard`).

The reader (:func:`verify`) checks every listed shard before the trainer's first step: present,
of the listed size, and of the listed content. By default the content check hashes the first and
last :data:`EDGE_BYTES` of each shard (whole shards up to twice that), a few reads per shard however
large the data; ``full=True`` streams every byte through sha256. Why that default: see
docs/ARCHITECTURE.md ("Every shard is checked before the first step").

TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) is written
here with ``google_crc32c`` (a dependency of Beam's GCP I/O); tests check the bytes against
TensorFlow's own ``TFRecordWriter``. The writer side never imports TensorFlow; :func:`verify` does,
lazily.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

from preprocessing import records
from preprocessing.errors import first_line
from preprocessing.records import RERUN, DataError, Shard

EDGE_BYTES = 64 * 1024
"""The default check hashes this many bytes at each end of a shard."""
GZIP_LEVEL = 6
"""zlib's default level, as Beam's gzip sink used: level 9 costs far more time for a few per cent."""
READ_CHUNK = 4 * 2**20
MAX_READERS = 16


# --------------------------------------------------------------------------- writing (Beam workers)


def new_run_id() -> str:
    """A short random id that every shard name of one pipeline run carries."""
    return uuid.uuid4().hex[:8]


def window_key(piece_key: str, index: int, shift: int = 0) -> int:
    """A stable 64-bit key of a piece's ``index``-th window: it picks the shard and the order within it.

    A hash, not the window's bytes, so that a shard is not sorted by its first token (the trainer's
    shuffle buffer would then mix only neighbours), and equal windows of different pieces spread out.
    A transposed copy (``shift`` semitones, ``--transpose``) hashes its shift too, so every copy's
    windows have keys of their own; the piece itself (0) keeps the key it always had.
    """
    text = f"{piece_key}\0{index}" if shift == 0 else f"{piece_key}\0{index}\0{shift:+d}"
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(keyed: tuple[int, bytes], total: int) -> tuple[int, tuple[int, bytes]]:
    """``(window key, record)`` → ``(shard index, (window key, record))``."""
    return keyed[0] % total, keyed


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record in TFRecord framing (see tensorflow/core/lib/io/record_writer.cc)."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", _masked_crc32c(length)), record, struct.pack("<I", _masked_crc32c(record))))


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
        edges.update(data[offset:offset + length])
    return Shard(name=name, size=len(data), records=count, sha256=hashlib.sha256(data).hexdigest(),
                 edges_sha256=edges.hexdigest())


def build(name: str, keyed: Iterable[tuple[int, bytes]], compression: str) -> tuple[bytes, Shard]:
    """One shard's bytes and entry from its ``(window key, record)`` pairs, in any order.

    Sorted by key (then bytes), so a rerun on the same input writes the same bytes whichever worker
    or bundle delivered the records.
    """
    ordered = [record for _, record in sorted(keyed)]
    data = shard_bytes(ordered, compression)
    return data, describe(name, data, len(ordered))


# --------------------------------------------------------------------------- checking (the trainer)


def count_problem(manifest: records.Manifest) -> str | None:
    """Whether the shards' record counts add up to the windows the manifest counts, split by split."""
    for split in records.SPLITS:
        listed = sum(shard.records for shard in manifest.shard_entries(split))
        if listed != manifest.windows(split):
            return (f"{records.MANIFEST_FILE} lists {listed:,} {split} records in its shards but counts "
                    f"{manifest.windows(split):,} {split} windows: it was edited or damaged; {RERUN}")
    return None


def shard_problem(shard: Shard, path: str, size: int, digest: str | None, full: bool) -> str | None:
    """What differs between a shard on disk (its ``size`` and hash) and its manifest entry, if anything."""
    if size != shard.size:
        how = "truncated or cut" if size < shard.size else "longer than written"
        return (f"shard {path} holds {size:,} bytes, {records.MANIFEST_FILE} lists {shard.size:,} ({how} since "
                f"the pipeline wrote it); {RERUN}")
    expected = shard.sha256 if full else shard.edges_sha256
    if digest is not None and digest != expected:
        what = "sha256" if full else f"sha256 of its first and last {EDGE_BYTES // 1024} KiB"
        return (f"shard {path} has the size {records.MANIFEST_FILE} lists ({size:,} bytes) but other content "
                f"({what} differs: replaced, e.g. by another run's shard); {RERUN}")
    return None


def _digest(tf, path: str, size: int, full: bool) -> str:
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        if full:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
            return h.hexdigest()
        for offset, length in edge_ranges(size):
            f.seek(offset)
            h.update(f.read(length))
    return h.hexdigest()


def check_shard(directory: str, shard: Shard, full: bool = False) -> str | None:
    """One shard against its entry, through ``tf.io.gfile`` (local, gs://, ram://); a problem or None."""
    tf = records._tf()
    path = records.join(directory, shard.name)
    try:
        size = tf.io.gfile.stat(path).length
        digest = _digest(tf, path, size, full) if size == shard.size else None
    except tf.errors.NotFoundError:
        return f"shard {path} listed in {records.MANIFEST_FILE} is missing; {RERUN}"
    except tf.errors.OpError as exc:
        return f"cannot read shard {path}: {first_line(exc)}"
    return shard_problem(shard, path, size, digest, full)


def verify(directory: str, manifest: records.Manifest, *, full: bool = False) -> None:
    """Check every shard the manifest lists (in parallel); :class:`DataError` naming the first bad one."""
    problem = count_problem(manifest)
    if problem:
        raise DataError(problem)
    listed: Sequence[Shard] = [shard for split in records.SPLITS for shard in manifest.shard_entries(split)]
    if not listed:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_READERS, len(listed))) as pool:
        problems = list(pool.map(lambda shard: check_shard(directory, shard, full), listed))
    problem = next((p for p in problems if p), None)
    if problem:
        raise DataError(problem)
