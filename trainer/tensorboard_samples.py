"""What the trainer shows in TensorBoard while it trains: a sample to see and hear, and its
measures.

Every ``--sample-every`` epochs, and after the last, the chief composes from fixed primers with the
model as it is: a greedy piece as piano roll, audio and text (:func:`log_greedy_sample`), and a few
seeded pieces measured as ``evaluate`` measures them (``music/…``, :mod:`trainer.measures`), under
the data's encoding and its sampling grammar, as ``generate`` composes. The epoch loop hands it the
weights (reading them is a collective, so every worker does); only the chief composes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from preprocessing.encodings.base import Encoding
from preprocessing.messages import first_line
from preprocessing.reader import encoding_of
from preprocessing.records import VALIDATION
from trainer import audio, measures, plots
from trainer import data as data_lib
from trainer import model as model_lib
from trainer.composer import Composer
from trainer.progress import log

GREEDY_LENGTH = 64
"""Tokens of the greedy sample: a few bars, enough to see the model change from epoch to epoch."""


class TensorBoardSamples:
    """The chief's TensorBoard samples: a plain copy of the network (built once, outside any
    strategy, weights copied in at each sample) run by :class:`~trainer.composer.Composer` from
    fixed primers.

    Each sample is a greedy piece from the first primer (piano roll, audio, tokens: consecutive
    samples differ only because the model changed) and the music measures of :mod:`trainer.measures`
    (``music/<measure>``, the names ``evaluate`` reports) of :data:`MEASURE_PIECES` seeded pieces of
    :data:`MEASURE_LENGTH` tokens at temperature 1 (generation's default) against validation
    excerpts of the same length (``music_validation/<measure>``, logged once).
    """

    MEASURE_PIECES, MEASURE_LENGTH, VALIDATION_RECORDS = 4, 256, 20_000

    def __init__(
        self, args: argparse.Namespace, data: data_lib.Data, primers: Sequence[Sequence[int]]
    ):
        self.args = args
        self.data = data
        self.primers = primers
        self.encoding = encoding_of(data.data_dir, data.manifest, remedy=None)
        self.composer = None
        self.can_measure: bool | None = None  # muspy importable; asked at the first sample
        # validation excerpts, read at the first sample
        self.reference: list[list[str]] | None = None

    def log(self, weights, step: int) -> None:
        """Compose and log this step's samples with ``weights`` (the trained model's)."""
        if self.composer is None:
            a = self.args
            copy = model_lib.build(
                a.model,
                self.data.sequence_length,
                self.data.vocab_size,
                units=a.units,
                num_layers=a.layers,
                dense_units=a.dense_units,
                embedding_dim=a.embedding_dim,
                dropout=a.dropout,
                objective=a.objective,
            )
            self.composer = Composer(
                copy, self.data.sequence_length, self.encoding.grammar(self.data.vocab)
            )
        self.composer.model.set_weights(weights)
        self.composer.sync_weights()
        try:
            log_greedy_sample(self.composer, self.primers[0], self.data.vocab, step, self.encoding)
            self.log_measures(step)
        except Exception as exc:  # noqa: BLE001 - a picture must never end a job: say why, train on
            log(
                f"warning: the TensorBoard sample of epoch {step} failed ({type(exc).__name__}: {first_line(exc)}); "
                "training goes on"
            )

    def log_measures(self, step: int) -> None:
        """``music/<measure>`` of this sample's pieces (skipped, with one warning, where muspy is
        missing)."""
        if self.can_measure is None:
            try:
                measures.muspy_module()
                self.can_measure = True
            except measures.MeasureError as exc:
                log(f"warning: {exc}; TensorBoard gets no music/ measures")
                self.can_measure = False
        if not self.can_measure:
            return
        first = self.reference is None
        if self.reference is None:
            self.reference = self.validation_excerpts()
        rows = min(self.MEASURE_PIECES, len(self.primers))
        primers = np.asarray(self.primers[:rows])
        ids = self.composer.generate(
            primers, self.MEASURE_LENGTH, temperature=1.0, seed=self.args.seed
        )
        result = measures.compare(
            self.composer.pieces(primers, ids, self.data.vocab), self.reference, self.encoding
        )
        values = {**result["generated"], measures.OVERLAP: result[measures.OVERLAP]}
        shown = {f"music/{name}": value for name, value in values.items()}
        if first:
            shown.update(
                {f"music_validation/{name}": v for name, v in result["validation"].items()}
            )
        for tag, value in shown.items():
            if value is not None:
                tf.summary.scalar(tag, value, step=step)

    def validation_excerpts(self) -> list[list[str]]:
        """The validation pieces (reassembled from the records) cut to :data:`MEASURE_LENGTH`
        tokens."""
        if not (self.data.windows(VALIDATION) and self.data.manifest.validation_shards):
            return []
        pieces = data_lib.pieces(self.data, VALIDATION, self.VALIDATION_RECORDS)
        return measures.excerpts(
            [[self.data.vocab[i] for i in p] for p in pieces], self.MEASURE_LENGTH
        )


def log_greedy_sample(
    composer: Composer,
    primer: Sequence[int],
    vocab: Sequence[str],
    step: int,
    encoding: Encoding,
    length: int = GREEDY_LENGTH,
) -> list[str]:
    """Generate a short greedy sample from ``primer`` and write it to the default TensorBoard
    writer.

    The piano roll as an image, the sample as audio (:func:`trainer.audio.synthesize`), and its
    tokens as text. Greedy (temperature 0) so consecutive samples differ only because the model
    changed.
    """
    primers = np.array([primer])
    ids = composer.generate(primers, length, context="carry", temperature=0.0)
    tokens = composer.pieces(primers, ids, vocab)[0]
    events = encoding.note_events(tokens)
    title = f"step {step}: greedy sample of {length} tokens ({encoding.name} encoding)"
    tf.summary.image("sample/piano_roll", plots.piano_roll(events, title=title)[None], step=step)
    wave = audio.synthesize(events)
    tf.summary.audio("sample/audio", wave[None, :, None], sample_rate=audio.SAMPLE_RATE, step=step)
    tf.summary.text("sample/tokens", " ".join(tokens), step=step)
    return tokens
