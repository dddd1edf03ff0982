"""The preprocessing job's last steps: the shard writers, and the write that publishes the output.

Both run on the workers, on any runner. :class:`WriteShards` groups one split's keyed spans by
shard and writes each shard in one go through Beam's ``FileSystems`` (:mod:`preprocessing.files`),
its bytes and manifest entry made by :mod:`preprocessing.shards`. :func:`write_outputs` runs once,
after everything else is final (its inputs are the tally, the vocabulary, its transposition table
and every shard entry), and
publishes the small files with the manifest last, so a folder with a manifest is a finished output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import apache_beam as beam

from preprocessing import files, records, shards, transpositions, windowing
from preprocessing.encodings import registry
from preprocessing.learn_vocabulary import Learned
from preprocessing.transforms import Tally


class WriteShard(beam.DoFn):
    """One shard's ``(record key, record)`` pairs → its file, written in one go → its manifest
    entry."""

    def __init__(self, output: str, split: str, run_id: str, total: int, compression: str):
        self.output = output
        self.split = split
        self.run_id = run_id
        self.total = total
        self.compression = compression

    def process(self, element) -> Iterator[records.Shard]:
        index, keyed = element
        name = records.shard_name(self.split, self.run_id, index, self.total, self.compression)
        data, shard = shards.build(name, keyed, self.compression)
        files.write_bytes(records.join(self.output, name), data)
        yield shard


class WriteShards(beam.PTransform):
    """Keyed records of one split → ``total`` shard files named with the run id → their manifest
    entries.

    One GroupByKey by shard index (what ``WriteToTFRecord(num_shards=...)`` does too), then one
    :class:`WriteShard` per shard. A shard that no record falls into is neither written nor listed.
    A retried or duplicated shard writer writes the same bytes to the same name.
    """

    def __init__(self, output: str, split: str, run_id: str, total: int, compression: str):
        super().__init__()
        self.output = output
        self.split = split
        self.run_id = run_id
        self.total = total
        self.compression = compression

    def expand(self, keyed_records):
        return (
            keyed_records
            | "ByShard" >> beam.Map(shards.shard_of, self.total)
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                WriteShard(self.output, self.split, self.run_id, self.total, self.compression)
            )
        )


def write_outputs(
    tally: Tally,
    vocab: list[str],
    train_shards: list[records.Shard],
    validation_shards: list[records.Shard],
    table: str = "",
    *,
    output: str,
    run_id: str,
    sequence_length: int,
    stride: int,
    validation_fraction: float,
    parts: str,
    compression: str,
    described: dict,
    transpose: int = 0,
    learned: Learned | None = None,
) -> str:
    """Publish dead_letter.jsonl, vocab.json, the encoding's saved files, ``transpositions.json``
    (``table``, with ``--transpose``) and manifest.json (last), then remove what it replaced.
    ``described`` is :func:`preprocessing.encodings.loader.describe` of the encoding; with
    ``--bpe-vocab``, ``learned`` (a side input) replaces its hash and saved files.

    Runs once, after the combines and both shard writes are final (they are its inputs), so a folder
    with a manifest is a finished output on any runner. Until this step, a finished output already
    in the folder is untouched; afterwards only the shards the new manifest lists remain. Returns
    the manifest's path.

    A run without a single training window publishes nothing: the folder keeps what it held (a
    finished output stays readable), this run's shards are removed, and its would-be manifest and
    dead letters go into :func:`records.failed_run_report` for the launcher to report; that path is
    returned instead. So does a run whose sample supports fewer learned tokens than
    ``--bpe-vocab`` asked (:attr:`Learned.problem`, the report's ``reason``).
    """
    if learned is not None:
        described = learned.describe(described)
    manifest = records.Manifest(
        sequence_length=sequence_length,
        stride=stride,
        vocab_size=len(vocab),
        vocab_hash=records.vocab_hash(vocab),
        parts=parts,
        compression=compression,
        validation_fraction=validation_fraction,
        counts=dict(tally.counts),
        train_shards=tuple(sorted(train_shards, key=lambda shard: shard.name)),
        validation_shards=tuple(sorted(validation_shards, key=lambda shard: shard.name)),
        run_id=run_id,
        encoding=described["token_format"],
        encoding_config_hash=described["config_hash"],
        encoding_versions=dict(described["versions"]),
        transpose=transpose,
        validation_pieces_hash=windowing.pieces_hash(tally.validation_keys),
        layout=records.SPANS,
        transposition_hash=transpositions.table_hash(table) if table else "",
        bpe_vocab=learned.manifest_entry() if learned is not None else {},
    )
    if not manifest.windows(records.TRAIN):
        return files.report_failure(output, run_id, manifest, tally.dead_letters)
    if learned is not None and learned.problem:
        return files.report_failure(
            output, run_id, manifest, tally.dead_letters, reason=learned.problem
        )
    saved = sorted(described["saved_files"].items())
    if table:
        saved.append((records.TRANSPOSITIONS_FILE, table))
    return publish_output(output, run_id, manifest, vocab, saved, tally.dead_letters)


def publish_output(
    output: str,
    run_id: str,
    manifest: records.Manifest,
    vocab: list[str],
    saved: list[tuple[str, str | bytes]],
    dead_letters: list[dict],
) -> str:
    """Publish the dead letters, the vocabulary, the ``saved`` files and the manifest (last), then
    remove what they replaced; returns the manifest's path."""
    lines = [json.dumps(entry, sort_keys=True) + "\n" for entry in dead_letters]
    files.publish(
        output,
        [
            (records.DEAD_LETTER_FILE, "".join(lines)),
            (records.VOCAB_FILE, records.vocab_to_json(vocab)),
            *saved,
            (records.MANIFEST_FILE, records.manifest_to_json(manifest)),
        ],
        run_id,
    )
    files.remove_stale(
        output,
        [*manifest.shards(records.TRAIN), *manifest.shards(records.VALIDATION)],
        [name for name, _ in saved],
        replaced=(*registry.every_saved_file(), records.TRANSPOSITIONS_FILE),
    )
    return records.join(output, records.MANIFEST_FILE)
