"""The generation job: ``lstm-composer generate`` / ``python -m trainer.generate``.

Its flags are :mod:`trainer.generate_flags`, parsed and checked before TensorFlow is imported, so
``--help`` and a wrong flag answer at once and print nothing of TensorFlow's. Then :func:`run`
checks the output and the primer (:func:`trainer.compositions.check_paths`), loads the model folder
(:mod:`trainer.export`) and its encoding, composes with :class:`trainer.composer.Composer` and
writes each piece (:mod:`trainer.compositions`); :func:`compose` prints what it wrote, or one error
line. Like :mod:`trainer.task`, the modules built on TensorFlow are imported when a job runs, not
when this module is imported: the quickstart and ``evaluate`` read the flags from here cheaply.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from preprocessing import quiet
from preprocessing.records import DataError
from trainer.generate_flags import PROG, parse_args, sampling_settings
from trainer.summary import SampleSummary, settings_title


def run(args: argparse.Namespace) -> list[tuple[str, SampleSummary]]:
    """Compose ``--num-samples`` pieces as the flags say and write each; (path, summary) per
    piece."""
    from preprocessing.reader import encoding_of
    from trainer.composer import Composer
    from trainer.compositions import check_paths, choose_primers, output_paths, write_piece
    from trainer.export import load_bundle

    check_paths(args)
    bundle = load_bundle(args.model_dir)
    encoding = encoding_of(args.model_dir, bundle.manifest, remedy=None)
    primers = choose_primers(bundle, args.primer, args.num_samples, args.seed, encoding)
    composer = Composer(bundle.model, bundle.sequence_length, encoding.grammar(bundle.vocab))
    progress = ComposingProgress(args.length)
    ids = composer.generate(primers, args.length, **sampling_settings(args), progress=progress)
    pieces = composer.pieces(primers, ids, bundle.vocab)
    results = []
    for path, tokens in zip(output_paths(args.output, args.num_samples), pieces):
        title = settings_title(
            posixpath.basename(path),
            encoding.name,
            len(tokens),
            args.temperature,
            args.top_k,
            args.top_p,
            args.seed,
        )
        results.append((path, write_piece(path, tokens, encoding, title, wav=args.wav)))
    return results


class ComposingProgress:
    """A line on stderr now and then while a long piece is composed; nothing for a short one.

    The first line comes after :data:`FIRST_LINE_SECONDS`, then one every :data:`LINE_SECONDS`:
    tokens so far, the share of the piece and the rate, so that a ``--length 100000`` run says
    what it is doing."""

    FIRST_LINE_SECONDS = 5.0
    LINE_SECONDS = 10.0

    def __init__(
        self, total: int, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.total = total
        self.out = out
        self.clock = clock
        self.started = clock()
        self.next_line = self.started + self.FIRST_LINE_SECONDS

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now < self.next_line or done >= self.total:
            return
        self.next_line = now + self.LINE_SECONDS
        rate = done / max(now - self.started, 1e-9)
        print(
            f"composing: {done:,} of {self.total:,} tokens ({100 * done / self.total:.0f} %), "
            f"{rate:,.0f} tokens/s",
            file=self.out or sys.stderr,
            flush=True,
        )


def compose(args: argparse.Namespace, prog: str = PROG) -> int:
    """Run the job and print what it wrote; a bad path, model folder or primer is one line
    (``<prog>: error: ...``) and status 2."""
    from trainer.compositions import GenerateError

    try:
        results = run(args)
    except (GenerateError, DataError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for path, summary in results:
        stem = path[:-4] if path.lower().endswith(".mid") else path
        wav = f", audio {stem}.wav" if args.wav else ""
        print(f"wrote {path} (piano roll {stem}.png{wav})")
        for line in summary.lines():
            print(f"  {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``lstm-composer generate``: check the flags, then import TensorFlow (quietly) and compose."""
    args = parse_args(argv)
    quiet.import_tensorflow()
    return compose(args)


if __name__ == "__main__":
    sys.exit(main())
