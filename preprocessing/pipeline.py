"""The preprocessing job: a folder of MIDI files → vocabulary + windowed, sharded TFRecords.

``python -m preprocessing.pipeline --input DIR_OR_GLOB --output DIR`` (or ``lstm-composer preprocess``)
runs :class:`PreprocessMidi` with Apache Beam: on this machine with the DirectRunner over all cores,
in the cloud unchanged with ``--runner DataflowRunner``. The flags are in
:mod:`preprocessing.options`, the steps in :mod:`preprocessing.transforms`, the file-system side in
:mod:`preprocessing.files`, and what only the DirectRunner needs in :mod:`preprocessing.direct_runner`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from typing import Any, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsList, AsSingleton
from apache_beam.runners.runner import PipelineState

from preprocessing import files, records
from preprocessing.direct_runner import SpreadFiles, direct_runner_workers
from preprocessing.files import PipelineError
from preprocessing.options import PreprocessOptions, parse_args
from preprocessing.transforms import (
    METRICS_NAMESPACE, MakeWindows, ParseMidi, TallyFn, VocabularyFn, count_matched, dead_letter_tally,
    piece_tally, write_outputs,
)

LOGGER = logging.getLogger("preprocessing.pipeline")


class PreprocessMidi(beam.PTransform):
    """MIDI files matching ``pattern`` → shards, ``vocab.json``, ``dead_letter.jsonl``, ``manifest.json``.

    ``root`` is the folder that file keys (what the train/validation split hashes) are relative to;
    ``local_workers`` is the DirectRunner's worker count, None on other runners. The last step takes
    the vocabulary and both shard lists as side inputs, so it runs only after all of them are final
    and writes the manifest last: a folder with a manifest is a finished output, on any runner.
    """

    def __init__(self, options: PreprocessOptions, *, pattern: str, root: str, train_shards: int,
                 local_workers: int | None = None):
        super().__init__()
        self.options, self.pattern, self.root = options, pattern, root
        self.train_shards, self.local_workers = train_shards, local_workers

    def expand(self, begin):
        o = self.options
        window_spec = (o.sequence_length, o.stride, o.validation_fraction)
        parsed = (
            begin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern)
            | "KeepMidi" >> beam.Filter(count_matched)
            | "SpreadFiles" >> SpreadFiles(self.local_workers)
            | "ReadMatches" >> fileio.ReadMatches()
            | "ParseMidi" >> beam.ParDo(ParseMidi(o.parts, self.root, o.max_seconds_per_file)).with_outputs(
                ParseMidi.DEAD_LETTER, main="pieces")
        )
        pieces, dead = parsed.pieces, parsed[ParseMidi.DEAD_LETTER]
        vocab = pieces | "Vocabulary" >> beam.CombineGlobally(VocabularyFn())
        windows = pieces | "Windows" >> beam.ParDo(MakeWindows(*window_spec), AsSingleton(vocab)).with_outputs(
            *records.SPLITS
        )
        shards = {split: windows[split] | f"Write{split.title()}" >> self.write_shards(split) for split in records.SPLITS}
        tally = (
            (pieces | "TallyPiece" >> beam.Map(piece_tally, *window_spec),
             dead | "TallyDeadLetter" >> beam.Map(dead_letter_tally))
            | "AllTallies" >> beam.Flatten()
            | "Tally" >> beam.CombineGlobally(TallyFn())
        )
        return tally | "WriteOutputs" >> beam.Map(
            write_outputs, AsSingleton(vocab), AsList(shards[records.TRAIN]), AsList(shards[records.VALIDATION]),
            output=o.output, sequence_length=o.sequence_length, stride=o.stride,
            validation_fraction=o.validation_fraction, parts=o.parts, compression=o.compression,
        )

    def write_shards(self, split: str) -> beam.io.WriteToTFRecord:
        o = self.options
        count = self.train_shards
        if split == records.VALIDATION:
            count = files.validation_shards(self.train_shards, o.validation_fraction)
        return beam.io.WriteToTFRecord(
            records.join(o.output, split),
            file_name_suffix=records.shard_suffix(o.compression),
            num_shards=count,
            shard_name_template=records.SHARD_NAME_TEMPLATE,
            compression_type=CompressionTypes.GZIP if o.compression == "gzip" else CompressionTypes.UNCOMPRESSED,
        )


class Outcome(NamedTuple):
    manifest: records.Manifest | None  # None when the runner did not run the job here (Dataflow dry run)
    metrics: dict[str, int]  # Beam Metrics counters of the run (namespace lstm_composer)
    result: Any = None  # Beam's PipelineResult (for a Dataflow dry run, ``result.job`` is the request)


def resolve_input(input_arg: str | None) -> str:
    """``--input``, or the embedded dataset (rendered on first use) when it is not given."""
    if input_arg is not None:
        return input_arg
    from preprocessing import sample_data

    directory = sample_data.ensure_dataset()
    LOGGER.info("no --input given: using the embedded dataset in %s", directory)
    print(f"no --input given: using the embedded dataset in {directory}", file=sys.stderr)
    return directory


def run_pipeline(argv: Sequence[str] | None = None) -> Outcome:
    """Parse ``argv`` and :func:`run` the job (argparse exits for bad flags)."""
    return run(*parse_args(argv))


def run(options: PreprocessOptions, beam_args: Sequence[str]) -> Outcome:
    """Run the whole job, print its summary and return what it wrote.

    Raises :class:`PipelineError` for a missing input or an unwritable output, before any Beam work starts.
    """
    options = replace(options, input=resolve_input(options.input))
    pattern, root = files.input_pattern(options.input)
    matched = files.match_inputs(pattern)
    train_shards = options.num_shards or files.choose_num_shards(
        sum(m.size_in_bytes for m in matched), options.sequence_length, options.stride
    )
    files.prepare_output(options.output)
    beam_options = PipelineOptions(list(beam_args))
    pipeline = beam.Pipeline(options=beam_options)
    _ = pipeline | "PreprocessMidi" >> PreprocessMidi(
        options, pattern=pattern, root=root, train_shards=train_shards,
        local_workers=direct_runner_workers(beam_options),
    )
    result = pipeline.run()
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
        # A Dataflow dry run builds the job request and stops; a failed job raises above.
        print(f"pipeline not run here (state {state}): nothing was written to {options.output}")
        return Outcome(None, {}, result)
    manifest = records.manifest_from_json(files.read_text(records.join(options.output, records.MANIFEST_FILE)))
    print(summary(manifest, options.output))
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
    # Run the imported module, not __main__: Beam pickles the DoFns by module name, and worker
    # processes can import preprocessing.pipeline but not this script's __main__.
    from preprocessing import pipeline as _importable

    sys.exit(_importable.main())
