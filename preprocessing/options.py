"""The preprocessing job's flags, and the pass-through of every other flag to Apache Beam.

Our own flags become a :class:`PreprocessOptions` of plain values; everything else must be a Beam
pipeline option (``--runner``, ``--project``, ``--temp_location``, ...) and goes to Beam unchanged.
A flag that neither knows stops the job: Beam alone would log "Discarding unparseable args" and run
without it, which turns a typo such as ``--sequence-lenght`` into a silently wrong dataset.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from preprocessing import quiet, records, transpositions
from preprocessing.direct_runner import with_local_defaults
from preprocessing.encodings import registry
from preprocessing.encodings.base import PARTS_MODES
from preprocessing.files import MAX_SHARDS

PROG = "lstm-composer preprocess"
BPE_SAMPLE_TOKENS = 2_000_000
"""``--bpe-sample-tokens``: the base tokens of training pieces a vocabulary is learned from, at
most (``docs/ENCODING.md``, "Learned vocabularies")."""


@dataclass(frozen=True)
class PreprocessOptions:
    """This job's own flags, checked."""

    input: str | None  # None: the embedded dataset
    output: str
    sequence_length: int = 100
    stride: int | None = None  # None: the sequence length (parse_args fills it in)
    validation_fraction: float = 0.1
    parts: str = "all"
    num_shards: int | None = None  # None: chosen from the input size
    compression: str = "none"
    max_seconds_per_file: float = 60.0
    encoding: str = registry.DEFAULT
    transpose: int = 0  # semitones: training windows are moved by a shift drawn from -K..K
    bpe_vocab: int | None = None  # REMI: learn a vocabulary of N tokens (MidiTok's BPE)
    bpe_sample_tokens: int = BPE_SAMPLE_TOKENS  # learned from at most this many base tokens


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
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
    parser.add_argument(
        "--sequence-length", type=int, default=100, help="tokens per window (default 100)"
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=None,
        help="tokens between the starts of stored spans (default: the sequence length). Each record "
        "holds a span of --sequence-length + --stride tokens, so every window of the piece lies in "
        "exactly one and each token is stored (L + S) / S times: 2 at the default, L + 1 at 1 "
        "(the old layout's cost). The trainer reads every window whatever the stride",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of pieces (by a stable hash of their path) held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--parts",
        choices=PARTS_MODES,
        default="all",
        help="all: every non-percussion part, simultaneous notes merged into chords (default); "
        "first: only the first instrument part, exactly as the reference notebook",
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="train shards (default: chosen from the input size)",
    )
    parser.add_argument("--compression", choices=records.COMPRESSIONS, default="none")
    parser.add_argument(
        "--max-seconds-per-file",
        type=float,
        default=60.0,
        help="budget of CPU seconds for parsing one file (default 60): a file over it is stopped and "
        "becomes a dead letter, and the job goes on; CPU time, so a busy machine gives the same "
        "dataset (a parse that sleeps or is starved is stopped by the clock, at 10x the budget and "
        "at least 300 s more than it). "
        "Parsing runs in a child process per worker so that it can be stopped",
    )
    parser.add_argument(
        "--encoding",
        choices=registry.NAMES,
        default=registry.DEFAULT,
        help="reference: the reference notebook's pitches and chords, via music21, no rhythm (default); "
        "remi: MidiTok's REMI via symusic, with bars, positions and durations (docs/ENCODING.md)",
    )
    add_vocabulary_flags(parser)
    quiet.add_verbose_flag(parser)
    return parser


def add_vocabulary_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that change what the vocabulary holds: ``--transpose`` (the moved tokens),
    ``--bpe-vocab`` and ``--bpe-sample-tokens`` (REMI's learned tokens)."""
    parser.add_argument(
        "--transpose",
        type=int,
        default=0,
        metavar="K",
        help="augmentation: the trainer moves each training window by a shift drawn from -K..K "
        f"semitones, anew every epoch (0 to {transpositions.MAX_TRANSPOSE}; default 0, off). The "
        "records store every piece once; the vocabulary holds every moved token and "
        "transpositions.json maps the ids. Validation windows are never moved; a window with a "
        "note that a shift would push out of the encoding's pitch range stays unmoved (counted)",
    )
    parser.add_argument(
        "--bpe-vocab",
        type=int,
        default=None,
        metavar="N",
        help="--encoding remi: learn a subword vocabulary of N tokens (MidiTok's BPE, base tokens "
        "included; more than the base vocabulary) from training pieces only, and write every piece "
        "with it: fewer, longer tokens (docs/ENCODING.md). Default: off",
    )
    parser.add_argument(
        "--bpe-sample-tokens",
        type=int,
        default=BPE_SAMPLE_TOKENS,
        metavar="T",
        help="with --bpe-vocab: learn from the training pieces with the smallest hashes of their "
        f"paths, up to T base tokens in all (default {BPE_SAMPLE_TOKENS:,}): one worker learns, "
        "whatever the size of the dataset",
    )


def bpe_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--bpe-vocab`` and ``--bpe-sample-tokens``, or None; REMI's base
    vocabulary is read from its tokenizer (MidiTok imported only then)."""
    if args.bpe_sample_tokens < 1:
        return "--bpe-sample-tokens must be at least 1"
    if args.bpe_vocab is None:
        return None
    if args.encoding != registry.REMI.name:
        return (
            f"--bpe-vocab learns a vocabulary of REMI tokens; --encoding {args.encoding} has none "
            "to learn (add --encoding remi, or leave --bpe-vocab out)"
        )
    from preprocessing.encodings.remi import base_vocab_size

    base = base_vocab_size()
    if args.bpe_vocab <= base:
        return (
            f"--bpe-vocab must be larger than REMI's base vocabulary of {base} tokens, which it "
            f"includes (not {args.bpe_vocab})"
        )
    return None


def unknown_to_beam(beam_args: Sequence[str]) -> list[str]:
    """The flags of ``beam_args`` that no Beam pipeline option knows.

    ``get_all_options`` hands the parser it builds from every registered ``PipelineOptions`` class
    to ``add_extra_args_fn`` (a public hook, meant for adding flags); we ask that parser what it
    cannot place. ``retain_unknown_options`` only keeps Beam from logging a warning about them.
    """
    unknown: list[str] = []

    def collect(parser: argparse.ArgumentParser) -> None:
        unknown.extend(parser.parse_known_args(list(beam_args))[1])

    PipelineOptions(list(beam_args)).get_all_options(
        add_extra_args_fn=collect, retain_unknown_options=True
    )
    return unknown


def parse_args(
    argv: Sequence[str] | None, defaults: Mapping[str, Any] | None = None
) -> tuple[PreprocessOptions, list[str]]:
    """Split our flags from Beam's, check both, and fill in the local defaults for the DirectRunner.

    ``defaults`` replaces flag defaults (by destination name): how a preset such as the quickstart's
    sets this job's values while every flag stays the user's to change.
    """
    parser = build_parser()
    parser.set_defaults(**(defaults or {}))
    args, beam_args = parser.parse_known_args(argv)
    unknown = unknown_to_beam(beam_args)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (neither this job's nor Apache Beam's)"
        )
    if args.sequence_length < 1:
        parser.error("--sequence-length must be at least 1")
    if args.stride is None:
        args.stride = args.sequence_length
    if args.stride < 1:
        parser.error(
            f"--stride must be at least 1 (default: the sequence length), not {args.stride}"
        )
    if not 0.0 <= args.validation_fraction < 1.0:
        parser.error("--validation-fraction must be at least 0 and below 1")
    if args.num_shards is not None and not 1 <= args.num_shards <= MAX_SHARDS:
        parser.error(f"--num-shards must be between 1 and {MAX_SHARDS}")
    if not 0 <= args.transpose <= transpositions.MAX_TRANSPOSE:
        parser.error(f"--transpose must be between 0 and {transpositions.MAX_TRANSPOSE} semitones")
    if not 0 < args.max_seconds_per_file < math.inf:
        parser.error("--max-seconds-per-file must be a positive number of seconds")
    problem = bpe_problem(args)
    if problem:
        parser.error(problem)
    return PreprocessOptions(**vars(args)), with_local_defaults(beam_args)
