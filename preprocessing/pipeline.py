"""The preprocessing job: a folder of MIDI files → vocabulary + sharded TFRecords of spans.

``lstm-composer preprocess --input DIR_OR_GLOB --output DIR`` (or
``python -m preprocessing.pipeline``) runs :class:`PreprocessMidi` with Apache Beam: on this machine
with the DirectRunner (a parse child per core), in the cloud unchanged with
``--runner DataflowRunner``. The flags are in :mod:`preprocessing.options`, the parse step in
:mod:`preprocessing.parse_files`, the other steps in :mod:`preprocessing.transforms` and
:mod:`preprocessing.writing`, the file-system side in :mod:`preprocessing.files`, and what only the
DirectRunner needs in :mod:`preprocessing.direct_runner`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsList, AsSingleton
from apache_beam.runners.runner import PipelineState

from preprocessing import files, records, shards
from preprocessing.direct_runner import (
    LOCAL_WORKERS_ENV,
    SpreadFiles,
    ctrl_c_quiet_threads,
    direct_runner_workers,
    parse_processes,
    stop_local_workers,
)
from preprocessing.encodings import loader
from preprocessing.files import PipelineError
from preprocessing.learn_vocabulary import ApplyLearned, LearnVocabulary
from preprocessing.messages import interrupted
from preprocessing.options import PROG, PreprocessOptions, parse_args
from preprocessing.parse_files import METRICS_NAMESPACE, ParseMidi
from preprocessing.run_summary import summary
from preprocessing.transforms import (
    CloseUnderShifts,
    MakeSpans,
    TallyFn,
    VocabularyFn,
    count_matched,
    dead_letter_tally,
    piece_tally,
    transposition_table,
)
from preprocessing.writing import WriteShards, write_outputs

LOGGER = logging.getLogger("preprocessing.pipeline")


class PreprocessMidi(beam.PTransform):
    """MIDI files matching ``pattern`` → shards, ``vocab.json``, ``dead_letter.jsonl``,
    ``manifest.json``.

    ``root`` is the folder that file keys (what the train/validation split hashes) are relative to;
    ``local_workers`` is the DirectRunner's worker count, None on other runners, and
    ``parse_processes`` the parse children each parse DoFn keeps busy; ``run_id`` goes
    into every shard name (a new one by default). The last step takes the vocabulary and both
    splits' shard entries as side inputs, so it runs only after all of them are final and writes the
    manifest last: a folder with a manifest is a finished output, on any runner. The encoding is
    described (token format, hash, versions, saved files) here, in the launching process, as plain
    values. With ``--transpose`` the vocabulary is closed under the shifts of the training pieces'
    tokens (:class:`CloseUnderShifts`), and the table that maps ids under each shift is made from
    it; the records hold every piece once, untransposed. With ``--bpe-vocab`` every piece is first
    written with a vocabulary learned from a bounded sample of the training pieces
    (:meth:`learn_vocabulary`).
    """

    def __init__(
        self,
        options: PreprocessOptions,
        *,
        pattern: str,
        root: str,
        train_shards: int,
        local_workers: int | None = None,
        parse_processes: int = 1,
        run_id: str | None = None,
    ):
        super().__init__()
        self.options = options
        self.pattern = pattern
        self.root = root
        self.train_shards, self.local_workers = train_shards, local_workers
        self.parse_processes = parse_processes
        self.run_id = run_id or shards.new_run_id()
        self.described = loader.describe(options.encoding)

    def parse_midi(self) -> ParseMidi:
        o = self.options
        return ParseMidi(
            o.parts, self.root, o.max_seconds_per_file, o.encoding, processes=self.parse_processes
        )

    def expand(self, begin):
        o = self.options
        window_spec = (o.sequence_length, o.stride, o.validation_fraction)
        parsed = (
            begin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern)
            | "KeepMidi" >> beam.Filter(count_matched)
            | "SpreadFiles" >> SpreadFiles(self.local_workers)
            | "ReadMatches" >> fileio.ReadMatches()
            | "ParseMidi"
            >> beam.ParDo(self.parse_midi()).with_outputs(ParseMidi.DEAD_LETTER, main="pieces")
        )
        pieces, learned = self.learn_vocabulary(parsed.pieces)
        pieces = pieces | "CloseUnderShifts" >> beam.ParDo(
            CloseUnderShifts(o.encoding, o.transpose, *window_spec)
        )
        dead = parsed[ParseMidi.DEAD_LETTER]
        vocab = pieces | "Vocabulary" >> beam.CombineGlobally(VocabularyFn())
        table = vocab | "TranspositionTable" >> beam.Map(
            transposition_table, o.encoding, o.transpose
        )
        spans = pieces | "Spans" >> beam.ParDo(
            MakeSpans(*window_spec), AsSingleton(vocab)
        ).with_outputs(*records.SPLITS)
        entries = {
            split: spans[split] | f"Write{split.title()}" >> self.write_shards(split)
            for split in records.SPLITS
        }
        return self.tally(pieces, dead) | "WriteOutputs" >> beam.Map(
            write_outputs,
            AsSingleton(vocab),
            AsList(entries[records.TRAIN]),
            AsList(entries[records.VALIDATION]),
            AsSingleton(table),
            **({"learned": AsSingleton(learned)} if learned is not None else {}),
            output=o.output,
            run_id=self.run_id,
            sequence_length=o.sequence_length,
            stride=o.stride,
            validation_fraction=o.validation_fraction,
            parts=o.parts,
            compression=o.compression,
            described=self.described,
            transpose=o.transpose,
        )

    def learn_vocabulary(self, pieces):
        """With ``--bpe-vocab``: every piece written with the vocabulary learned from a bounded
        sample of the training pieces, and that vocabulary (:mod:`preprocessing.learn_vocabulary`);
        without it, the pieces as they are and None."""
        o = self.options
        if not o.bpe_vocab:
            return pieces, None
        learned = pieces | "LearnVocabulary" >> LearnVocabulary(
            o.bpe_vocab, o.bpe_sample_tokens, o.validation_fraction
        )
        return pieces | "ApplyLearned" >> beam.ParDo(ApplyLearned(), AsSingleton(learned)), learned

    def tally(self, pieces, dead):
        """Every piece's counts and every dead letter, combined into one :class:`Tally`."""
        o = self.options
        window_spec = (o.sequence_length, o.stride, o.validation_fraction)
        return (
            (
                pieces | "TallyPiece" >> beam.Map(piece_tally, *window_spec),
                dead | "TallyDeadLetter" >> beam.Map(dead_letter_tally),
            )
            | "AllTallies" >> beam.Flatten()
            | "Tally" >> beam.CombineGlobally(TallyFn())
        )

    def write_shards(self, split: str) -> WriteShards:
        o = self.options
        count = self.train_shards
        if split == records.VALIDATION:
            count = files.validation_shards(self.train_shards, o.validation_fraction)
        return WriteShards(o.output, split, self.run_id, count, o.compression)


class Outcome(NamedTuple):
    # None when the runner did not run the job here (Dataflow dry run), or the run failed
    manifest: records.Manifest | None
    metrics: dict[str, int]  # Beam Metrics counters of the run (namespace lstm_composer)
    # Beam's PipelineResult (for a Dataflow dry run, ``result.job`` is the request)
    result: Any = None
    # a run that produced no training windows and published nothing: its report's path
    failed: str | None = None
    reason: str | None = None  # why, when it is not the lack of training windows


def resolve_input(input_arg: str | None) -> str:
    """``--input``, or the embedded dataset (rendered on first use) when it is not given."""
    if input_arg is not None:
        return input_arg
    from preprocessing import sample_data

    directory = sample_data.ensure_dataset()
    LOGGER.info("no --input given: using the embedded dataset in %s", directory)
    print(f"no --input given: using the embedded dataset in {directory}", file=sys.stderr)
    return directory


def run(argv: Sequence[str] | None = None) -> Outcome:
    """Parse ``argv`` and run the job (:func:`run_job`), as Beam's examples' ``run(argv)`` does;
    argparse exits for bad flags."""
    return run_job(*parse_args(argv))


def run_job(options: PreprocessOptions, beam_args: Sequence[str]) -> Outcome:
    """Run the whole job with checked flags, print its summary and return what it wrote.

    Raises :class:`PipelineError` for a missing input or an unwritable output, before any Beam work
    starts.
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
    job = PreprocessMidi(
        options,
        pattern=pattern,
        root=root,
        train_shards=train_shards,
        local_workers=direct_runner_workers(beam_options),
        parse_processes=parse_processes(beam_options),
    )
    _ = pipeline | "PreprocessMidi" >> job
    if job.local_workers:  # the DirectRunner's workers and parse children inherit it (Ctrl-C)
        os.environ[LOCAL_WORKERS_ENV] = str(os.getpid())
    try:
        with ctrl_c_quiet_threads():
            result = pipeline.run()
            state = result.wait_until_finish()
    except KeyboardInterrupt:
        logging.disable(logging.CRITICAL)  # the workers' errors as they go: not news
        stop_local_workers()
        raise
    if state != PipelineState.DONE:
        # A Dataflow dry run builds the job request and stops; a failed job raises above.
        print(f"pipeline not run here (state {state}): nothing was written to {options.output}")
        return Outcome(None, {}, result)
    report = records.join(options.output, records.failed_run_report(job.run_id))
    if FileSystems.exists(report):  # no training window: nothing was published
        document = json.loads(files.read_text(report))
        failed = records.manifest_from_json(json.dumps(document["manifest"]))
        print(summary(failed, options.output, report=report))
        reason = document.get("reason")
        return Outcome(None, counter_values(result), result, failed=report, reason=reason)
    manifest = records.manifest_from_json(
        files.read_text(records.join(options.output, records.MANIFEST_FILE))
    )
    print(summary(manifest, options.output))
    return Outcome(manifest, counter_values(result), result)


def counter_values(result) -> dict[str, int]:
    """The committed values of this job's Beam counters (attempted ones where a runner has no
    commits)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    values: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[counter.key.metric.name] = values.get(counter.key.metric.name, 0) + int(value or 0)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        outcome = run(argv)
    except PipelineError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(PROG, NOTHING_PUBLISHED)
    if outcome.failed:
        print(f"{PROG}: error: {failure_line(outcome.failed, outcome.reason)}", file=sys.stderr)
        return 1
    return 0


NOTHING_PUBLISHED = (
    "this run published nothing, and the output folder holds what it held before (a finished "
    "output there stays readable); run the same command again"
)


def failure_line(report: str, reason: str | None = None) -> str:
    """Why a run published nothing (``reason``, or the lack of training windows), and that the
    folder kept what it held."""
    folder = report.rsplit("/", 1)[0]
    why = reason or (
        "no training windows were produced (every piece failed to parse, was empty, was too short "
        "for --sequence-length, or went to validation; see the counts above)"
    )
    return (
        f"{why}: nothing was published, and {folder} holds what it held before (this run's counts "
        f"and reasons: {report})"
    )


if __name__ == "__main__":
    # Run the imported module, not __main__: Beam pickles the DoFns by module name, and worker
    # processes can import preprocessing.pipeline but not this script's __main__.
    from preprocessing import pipeline as _importable

    sys.exit(_importable.main())
