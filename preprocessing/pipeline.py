"""The preprocessing job: a folder of MIDI files → vocabulary + windowed, sharded TFRecords.

``python -m preprocessing.pipeline --input DIR_OR_GLOB --output DIR`` (or ``lstm-composer preprocess``)
runs an Apache Beam pipeline: on this machine with the DirectRunner over all cores, in the cloud
unchanged with ``--runner DataflowRunner``. Our own flags are parsed here; every other flag goes to
Beam's ``PipelineOptions``, and a flag that neither knows stops the job (Beam alone would only log
"Discarding unparseable args" and run without it).

Steps (each labelled in the Beam graph)::

    MatchFiles → KeepMidi → SpreadFiles → ReadMatches → ParseMidi ──(bad file: path, reason)──┐
                                            │ pieces (path, tokens)                            │
                                            ├─► Vocabulary (sorted distinct tokens) ───────────┤
                                            ├─► Windows (vocab as side input), split by a      │
                                            │   stable hash of the path ──► train-*, validation-* shards
                                            └─► Tally (counts + dead letters) ─► WriteOutputs:
                                                vocab.json, dead_letter.jsonl, then manifest.json

WriteOutputs takes the vocabulary and both shard lists as side inputs, so Beam runs it only after
all of them are final, and it writes the manifest last: a folder with a manifest is a finished output.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import logging
import math
import os
import posixpath
import re
import sys
from collections import Counter
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.window import GlobalWindows
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, _BeamArgumentParser

from preprocessing import notes, records, windowing

LOGGER = logging.getLogger("preprocessing.pipeline")
METRICS_NAMESPACE = "lstm_composer"
MIDI_EXTENSIONS = (".mid", ".midi")
TARGET_SHARD_BYTES = 64 * 2**20
"""Aim for shards of about 64 MiB (uncompressed), so tf.data can interleave many on a large dataset."""
MAX_SHARDS = 1024
ESTIMATED_MIDI_BYTES_PER_TOKEN = 6.0
"""Measured on the embedded dataset (multi-track MIDI rendered by music21); only sizes the shards."""


class PipelineError(RuntimeError):
    """A problem with the job's flags, input or output, reported as one sentence instead of a traceback."""


class Piece(NamedTuple):
    path: str
    key: str  # path relative to the input folder: what the train/validation split hashes
    tokens: list[str]


# --------------------------------------------------------------------------- flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preprocessing.pipeline",
        description=(
            "Parse a folder of MIDI files with music21, build the token vocabulary and write "
            "windows of token ids as sharded TFRecords. Any Apache Beam pipeline option "
            "(--runner, --direct_num_workers, --project, --region, --temp_location, --setup_file, ...) "
            "is passed through to Beam."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--input",
        default=None,
        help="a folder (searched recursively) or a glob of MIDI files (*.mid, *.midi, any case), local "
        "or gs://. Default: the embedded dataset, rendered from music21's corpus on first use.",
    )
    parser.add_argument("--output", required=True, help="output folder, local or gs://")
    parser.add_argument("--sequence-length", type=int, default=100, help="tokens per window (default 100)")
    parser.add_argument("--stride", type=int, default=1, help="tokens between window starts (default 1)")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of pieces (by a stable hash of their path) held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--parts",
        choices=notes.PARTS_MODES,
        default="all",
        help="all: every non-percussion part, simultaneous notes merged into chords (default); "
        "first: only the first instrument part, exactly as the reference notebook",
    )
    parser.add_argument(
        "--num-shards", type=int, default=None, help="train shards (default: chosen from the input size)"
    )
    parser.add_argument("--compression", choices=records.COMPRESSIONS, default="none")
    return parser


def _beam_option_names() -> _BeamArgumentParser:
    """A parser that knows every Beam pipeline option, to reject flags that nobody knows."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - the same walk Beam's get_all_options does
    return parser


def _has_flag(beam_args: Sequence[str], name: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in beam_args)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Split our flags from Beam's, check both, and fill in the local defaults for the DirectRunner."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    _, unknown = _beam_option_names().parse_known_args(beam_args)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (neither this job's nor Apache Beam's)")
    if args.sequence_length < 1:
        parser.error("--sequence-length must be at least 1")
    if args.stride < 1:
        parser.error("--stride must be at least 1")
    if not 0.0 <= args.validation_fraction < 1.0:
        parser.error("--validation-fraction must be at least 0 and below 1")
    if args.num_shards is not None and not 1 <= args.num_shards <= MAX_SHARDS:
        parser.error(f"--num-shards must be between 1 and {MAX_SHARDS}")
    runner_flag = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    runner_flag.add_argument("--runner", default=None)
    runner = runner_flag.parse_known_args(beam_args)[0].runner
    if runner is None:
        runner = "DirectRunner"
        beam_args.append(f"--runner={runner}")
    if is_direct_runner(runner) and not _has_flag(beam_args, "--direct_running_mode"):
        # Parsing is CPU-bound Python: only worker processes run it in parallel.
        beam_args.append("--direct_running_mode=multi_processing")
        if not _has_flag(beam_args, "--direct_num_workers"):
            beam_args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    return args, beam_args


# --------------------------------------------------------------------------- input and output


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


_FILES_MATCHED = Metrics.counter(METRICS_NAMESPACE, "files_matched")


def _count_matched(metadata) -> bool:
    """Keep MIDI files only, and count them (``Metrics.counter`` resolves its container per call)."""
    if not is_midi_path(metadata.path):
        return False
    _FILES_MATCHED.inc()
    return True


def file_key(path: str, root: str) -> str:
    """A file's path relative to the input folder, with forward slashes."""
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
    if validation_fraction == 0:
        return 1
    return max(1, math.ceil(train_shards * validation_fraction / (1 - validation_fraction)))


def prepare_output(output: str) -> None:
    """Make sure ``--output`` can be written, and remove what an earlier run there left.

    The old manifest goes first, so a run that dies midway can never leave a folder that looks
    finished; old shards go too, so they cannot be mixed up with this run's.
    """
    probe = records.join(output, ".lstm-composer-write-test")
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as exc:  # noqa: BLE001
        raise PipelineError(f"cannot write to --output {output}: {_first_line(exc)}") from exc
    stale = [records.join(output, records.MANIFEST_FILE)]
    for split in records.SPLITS:
        (match,) = FileSystems.match([records.join(output, f"{split}-*-of-*.tfrecord*")])
        stale += [m.path for m in match.metadata_list]
    stale = [path for path in stale if FileSystems.exists(path)]
    if stale:
        FileSystems.delete(stale)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def write_text(path: str, text: str) -> str:
    """Write one small text file through Beam's FileSystems (local, gs://, ...); returns its path."""
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write(text.encode("utf-8"))
    return path


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


# --------------------------------------------------------------------------- Beam steps


def balance_by_size(sizes: Sequence[int], buckets: int) -> list[int]:
    """Assign items to ``buckets`` so that the buckets' total sizes come out close: largest first,
    each to the bucket with the least so far (LPT, within 4/3 of the best possible largest bucket).

    Returns the bucket of each item, in the items' order. Ties go to the lower item index and the
    lower bucket, so the assignment depends on the sizes alone.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    assignment = [0] * len(sizes)
    heap = [(0, bucket) for bucket in range(buckets)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, bucket = heapq.heappop(heap)
        assignment[index] = bucket
        heapq.heappush(heap, (load + sizes[index], bucket))
    return assignment


class BalanceBySize(beam.DoFn):
    """Key each file of a bundle by a worker bucket, balancing the buckets by file size."""

    def __init__(self, buckets: int):
        self.buckets = buckets
        self._files: list = []

    def start_bundle(self) -> None:
        self._files = []

    def process(self, metadata) -> None:
        self._files.append(metadata)

    def finish_bundle(self) -> Iterator:
        sizes = [metadata.size_in_bytes for metadata in self._files]
        for metadata, bucket in zip(self._files, balance_by_size(sizes, self.buckets)):
            yield GlobalWindows.windowed_value((bucket, metadata))
        self._files = []


class SpreadFiles(beam.PTransform):
    """Spread the matched files over the workers that parse them.

    ``MatchFiles`` lists on one worker; without a fusion break every parse would run there too.

    * On Dataflow (and any other runner): a ``Reshuffle``. The service rebalances work dynamically
      across however many workers it has.
    * On the DirectRunner (``local_workers`` given): the files are dealt into exactly one group per
      worker, balanced by file size, then grouped. The DirectRunner splits a stage's input once,
      statically (after a ``GroupByKey``, keys go round-robin: one group per worker), and never
      rebalances. On the embedded dataset, with a ``Reshuffle``'s random keys the slower of two
      workers would parse 1.09x as long as a perfect split in the median and 1.21x at the 90th
      percentile; size-balanced groups give 1.04x (``bench/preprocess.py``). music21's parse time
      follows the file's size (correlation about 0.8), not exactly.
    """

    def __init__(self, local_workers: int | None = None):
        super().__init__()
        self.local_workers = local_workers

    def expand(self, files):
        if not self.local_workers:
            return files | "Reshuffle" >> beam.Reshuffle()
        return (
            files
            | "BalanceBySize" >> beam.ParDo(BalanceBySize(self.local_workers))
            | "GroupPerWorker" >> beam.GroupByKey()
            | "Ungroup" >> beam.FlatMap(lambda bucket_files: bucket_files[1])
        )


def is_direct_runner(runner: str | None) -> bool:
    """True for Beam's DirectRunner under any of its spellings (None is Beam's default: the DirectRunner)."""
    if runner is None:
        return True
    return isinstance(runner, str) and runner.rsplit(".", 1)[-1].lower() in ("directrunner", "direct")


def direct_runner_workers(options: PipelineOptions) -> int | None:
    """The DirectRunner's worker count for these options; None for any other runner."""
    if not is_direct_runner(options.view_as(StandardOptions).runner):
        return None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return 1
    return direct.direct_num_workers or os.cpu_count() or 1


class ParseMidi(beam.DoFn):
    """One MIDI file → a :class:`Piece`; a file that cannot be read or parsed → the dead letters."""

    DEAD_LETTER = "dead_letter"

    def __init__(self, parts: str, root: str):
        self.parts = parts
        self.root = root
        self.parsed = Metrics.counter(METRICS_NAMESPACE, "files_parsed")
        self.failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")
        self.tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")

    def setup(self) -> None:
        # Only where the process is Beam's own; never in a caller's process (in-memory mode).
        if in_beam_worker_process():
            freeze_long_lived_objects()

    def process(self, readable_file) -> Iterator:
        path = readable_file.metadata.path
        try:
            data = readable_file.read()
            tokens = notes.tokens_from_midi_bytes(data, self.parts)
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, never fatal
            self.failed.inc()
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, notes.MidiParseError) else str(exc)
            LOGGER.warning("skipping %s: %s", path, reason)
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, {"path": path, "error": reason})
            return
        self.parsed.inc()
        self.tokens.inc(len(tokens))
        yield Piece(path=path, key=file_key(path, self.root), tokens=tokens)


BEAM_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
_frozen = False


def in_beam_worker_process() -> bool:
    """True in a process that exists to run Beam work: the SDK worker that the DirectRunner's
    multi-processing mode and Dataflow start as ``python -m apache_beam.runners.worker.sdk_worker_main``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == BEAM_WORKER_MAIN


def freeze_long_lived_objects() -> None:
    """Move every object this process holds now out of the garbage collector's sight, once.

    A worker process carries Beam, protobuf, gRPC and music21: a few hundred thousand long-lived
    objects. music21 allocates heavily while it parses, so the collector runs full collections that
    walk all of them again and again: the reference loop takes 1.18x as long in a process that has
    imported Beam as in one with music21 alone, and 0.99x after freezing (``bench/parse_gc.py``).
    At exit the interpreter walks them once more: about 1 s per worker, which the DirectRunner
    waits out one worker after the other. ``gc.freeze()``, Python's documented tool for this, moves
    them to a permanent generation; garbage is collected first so that none of it is kept. Objects
    created later are collected as usual.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def piece_counts(piece: Piece, sequence_length: int, stride: int, validation_fraction: float) -> Counter:
    """The manifest counts one parsed piece contributes (same pure functions as the windows)."""
    counts: Counter = Counter(files_parsed=1, tokens=len(piece.tokens))
    n_windows = windowing.window_count(len(piece.tokens), sequence_length, stride)
    if not piece.tokens:
        counts["pieces_empty"] = 1
    elif n_windows == 0:
        counts["pieces_too_short"] = 1
    else:
        split = windowing.split_for(piece.key, validation_fraction)
        counts[f"{split}_pieces"] = 1
        counts[f"{split}_windows"] = n_windows
    return counts


class Tally(NamedTuple):
    """What the manifest and the dead-letter file need from the whole run, as one combinable value."""

    counts: Counter
    dead_letters: list[dict]


def piece_tally(piece: Piece, sequence_length: int, stride: int, validation_fraction: float) -> Tally:
    return Tally(piece_counts(piece, sequence_length, stride, validation_fraction), [])


def dead_letter_tally(entry: dict) -> Tally:
    return Tally(Counter(files_failed=1), [entry])


class MakeWindows(beam.DoFn):
    """One piece → serialized ``tf.train.Example`` windows, tagged with the piece's split."""

    def __init__(self, sequence_length: int, stride: int, validation_fraction: float):
        self.sequence_length = sequence_length
        self.stride = stride
        self.validation_fraction = validation_fraction
        self.counters = {
            split: Metrics.counter(METRICS_NAMESPACE, f"{split}_windows") for split in records.SPLITS
        }
        self.empty = Metrics.counter(METRICS_NAMESPACE, "pieces_empty")
        self.too_short = Metrics.counter(METRICS_NAMESPACE, "pieces_too_short")
        self._index: dict[str, int] | None = None
        self._vocab_id: int | None = None

    def process(self, piece: Piece, vocab: list[str]) -> Iterator:
        if self._vocab_id != id(vocab):  # the side input is the same object for a whole bundle
            self._index = {token: i for i, token in enumerate(vocab)}
            self._vocab_id = id(vocab)
        if not piece.tokens:
            self.empty.inc()
            return
        if windowing.window_count(len(piece.tokens), self.sequence_length, self.stride) == 0:
            self.too_short.inc()
            return
        split = windowing.split_for(piece.key, self.validation_fraction)
        ids = windowing.token_ids(piece.tokens, self._index)
        for inputs, target in windowing.windows(ids, self.sequence_length, self.stride):
            self.counters[split].inc()
            yield beam.pvalue.TaggedOutput(split, records.encode_example(inputs, target))


class VocabularyFn(beam.CombineFn):
    """The sorted distinct tokens of all pieces, in one combine (partial sets merge on each worker)."""

    def create_accumulator(self) -> set:
        return set()

    def add_input(self, accumulator: set, piece: Piece) -> set:
        accumulator.update(piece.tokens)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[set]) -> set:
        return set().union(*accumulators)

    def extract_output(self, accumulator: set) -> list[str]:
        return windowing.vocabulary(accumulator)


class TallyFn(beam.CombineFn):
    """Adds up the counts and collects the dead letters of every file, in one combine.

    One combine instead of a count, a list and a sum: on the DirectRunner each combine costs a
    fixed ~0.2 s of graph construction and stages, whatever the input size (docs/PERFORMANCE.md).
    Every matched MIDI file is either parsed or failed, so ``files_matched`` is their sum; the
    ``files_matched`` Beam counter, counted where the files are listed, is checked against it by
    the tests. With no input at all it still yields zero counts, so WriteOutputs always runs.
    """

    def create_accumulator(self) -> Tally:
        return Tally(Counter(), [])

    def add_input(self, accumulator: Tally, tally: Tally) -> Tally:
        accumulator.counts.update(tally.counts)
        accumulator.dead_letters.extend(tally.dead_letters)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Tally]) -> Tally:
        total = self.create_accumulator()
        for accumulator in accumulators:
            self.add_input(total, accumulator)
        return total

    def extract_output(self, accumulator: Tally) -> Tally:
        counts = Counter({key: int(accumulator.counts.get(key, 0)) for key in records.COUNT_KEYS})
        counts["files_matched"] = counts["files_parsed"] + counts["files_failed"]
        dead_letters = sorted(accumulator.dead_letters, key=lambda entry: entry["path"])
        return Tally(counts, dead_letters)


def write_outputs(tally: Tally, output: str, args: argparse.Namespace, vocab: list[str],
                  train_files: list[str], validation_files: list[str]) -> str:
    """Write vocab.json and dead_letter.jsonl, then manifest.json last; returns the manifest's path.

    Runs once, after the combines and both shard writes are final (they are its inputs), so a folder
    with a manifest is a finished output on any runner.
    """
    write_text(records.join(output, records.VOCAB_FILE), records.vocab_to_json(vocab))
    lines = [json.dumps(entry, sort_keys=True) + "\n" for entry in tally.dead_letters]
    write_text(records.join(output, records.DEAD_LETTER_FILE), "".join(lines))
    manifest = records.Manifest(
        sequence_length=args.sequence_length,
        stride=args.stride,
        vocab_size=len(vocab),
        vocab_hash=records.vocab_hash(vocab),
        parts=args.parts,
        compression=args.compression,
        validation_fraction=args.validation_fraction,
        counts=dict(tally.counts),
        train_shards=records.relative_shard_names(train_files),
        validation_shards=records.relative_shard_names(validation_files),
    )
    return write_text(records.join(output, records.MANIFEST_FILE), records.manifest_to_json(manifest))


def build(pipeline: beam.Pipeline, args: argparse.Namespace, pattern: str, root: str, num_shards: int,
          local_workers: int | None = None) -> None:
    """Add the preprocessing steps to ``pipeline`` (separate from running it, so tests can inspect it).

    ``local_workers``: the DirectRunner's worker count (see :class:`SpreadFiles`); None elsewhere.
    """
    out = args.output
    matched = (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(pattern)
        | "KeepMidi" >> beam.Filter(_count_matched)
    )
    parsed = (
        matched
        | "SpreadFiles" >> SpreadFiles(local_workers)
        | "ReadMatches" >> fileio.ReadMatches()
        | "ParseMidi" >> beam.ParDo(ParseMidi(args.parts, root)).with_outputs(ParseMidi.DEAD_LETTER, main="pieces")
    )
    pieces, dead = parsed.pieces, parsed[ParseMidi.DEAD_LETTER]

    vocab = pieces | "Vocabulary" >> beam.CombineGlobally(VocabularyFn())

    examples = pieces | "Windows" >> beam.ParDo(
        MakeWindows(args.sequence_length, args.stride, args.validation_fraction), beam.pvalue.AsSingleton(vocab)
    ).with_outputs(*records.SPLITS)
    compression = CompressionTypes.GZIP if args.compression == "gzip" else CompressionTypes.UNCOMPRESSED
    shard_counts = {
        records.TRAIN: num_shards,
        records.VALIDATION: validation_shards(num_shards, args.validation_fraction),
    }
    written = {
        split: examples[split]
        | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
            records.join(out, split),
            file_name_suffix=records.shard_suffix(args.compression),
            num_shards=shard_counts[split],
            shard_name_template=records.SHARD_NAME_TEMPLATE,
            compression_type=compression,
        )
        for split in records.SPLITS
    }

    piece_tallies = pieces | "TallyPiece" >> beam.Map(
        piece_tally, args.sequence_length, args.stride, args.validation_fraction
    )
    dead_tallies = dead | "TallyDeadLetter" >> beam.Map(dead_letter_tally)
    tally = (piece_tallies, dead_tallies) | "AllTallies" >> beam.Flatten() | "Tally" >> beam.CombineGlobally(TallyFn())

    side = beam.pvalue
    _ = tally | "WriteOutputs" >> beam.Map(
        write_outputs,
        out,
        args,
        side.AsSingleton(vocab),
        side.AsList(written[records.TRAIN]),
        side.AsList(written[records.VALIDATION]),
    )


# --------------------------------------------------------------------------- running


def resolve_input(args: argparse.Namespace) -> str:
    if args.input is not None:
        return args.input
    from preprocessing import sample_data

    directory = sample_data.ensure_dataset()
    LOGGER.info("no --input given: using the embedded dataset in %s", directory)
    print(f"no --input given: using the embedded dataset in {directory}", file=sys.stderr)
    return directory


class Outcome(NamedTuple):
    manifest: records.Manifest | None  # None when the runner did not run the job here (Dataflow dry run)
    metrics: dict[str, int]  # Beam Metrics counters of the run (namespace lstm_composer)
    result: Any = None  # Beam's PipelineResult (for a Dataflow dry run, ``result.job`` is the request)


def run_pipeline(argv: Sequence[str] | None = None) -> Outcome:
    """Run the whole job, print its summary and return what it wrote.

    Raises :class:`PipelineError` for a missing input or an unwritable output (argparse exits for
    bad flags), before any Beam work starts.
    """
    args, beam_args = parse_args(argv)
    args.input = resolve_input(args)
    pattern, root = input_pattern(args.input)
    files = match_inputs(pattern)
    num_shards = args.num_shards or choose_num_shards(
        sum(m.size_in_bytes for m in files), args.sequence_length, args.stride
    )
    prepare_output(args.output)
    options = PipelineOptions(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, args, pattern, root, num_shards, direct_runner_workers(options))
    result = pipeline.run()
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
        # A Dataflow dry run builds the job request and stops; a failed job raises above.
        print(f"pipeline not run here (state {state}): nothing was written to {args.output}")
        return Outcome(None, {}, result)
    manifest = records.manifest_from_json(read_text(records.join(args.output, records.MANIFEST_FILE)))
    print(summary(manifest, args.output))
    return Outcome(manifest, counter_values(result), result)


def counter_values(result) -> dict[str, int]:
    """The committed values of this job's Beam counters (attempted ones where a runner has no commits)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    values: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[counter.key.metric.name] = values.get(counter.key.metric.name, 0) + int(value or 0)
    return values


def summary(manifest: records.Manifest, output: str) -> str:
    """The one-screen report printed at the end of a run."""
    c = manifest.counts
    dead = records.join(output, records.DEAD_LETTER_FILE)
    lines = [
        f"preprocessing finished: {output}",
        f"  files matched      {c['files_matched']:>10,}",
        f"  parsed             {c['files_parsed']:>10,}",
        f"  failed             {c['files_failed']:>10,}" + (f"   (reasons in {dead})" if c["files_failed"] else ""),
        f"  empty (no notes)   {c['pieces_empty']:>10,}",
        f"  too short          {c['pieces_too_short']:>10,}   (fewer than {manifest.sequence_length + 1} tokens)",
        f"  tokens             {c['tokens']:>10,}   vocabulary {manifest.vocab_size:,} (hash {manifest.vocab_hash})",
        f"  train windows      {c['train_windows']:>10,}   from {c['train_pieces']:,} pieces in "
        f"{len(manifest.train_shards)} shard(s)",
        f"  validation windows {c['validation_windows']:>10,}   from {c['validation_pieces']:,} pieces in "
        f"{len(manifest.validation_shards)} shard(s)",
        f"  sequence length {manifest.sequence_length}, stride {manifest.stride}, parts={manifest.parts}; "
        "windows never cross from one piece into the next",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        manifest = run_pipeline(argv).manifest
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if manifest is None:
        return 0
    if manifest.windows(records.TRAIN) == 0:
        print(
            "error: no training windows were produced (every piece failed to parse, was empty, was too "
            f"short for --sequence-length {manifest.sequence_length}, or went to validation); "
            "see the counts above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module, not __main__: Beam pickles Piece and the DoFns by module name, and
    # worker processes can import preprocessing.pipeline but not this script's __main__.
    from preprocessing import pipeline as _importable

    sys.exit(_importable.main())
