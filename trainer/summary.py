"""Describing a composed piece in a few numbers: what ``generate`` prints and writes beside it.

The summary (:class:`SampleSummary`) counts tokens and distinct tokens, finds the longest repeated
loop (:func:`trainer.repeats.longest_loop`; greedy decoding falls into loops, and this shows it;
``evaluate`` reports it as ``loop_share``) and the pitch range, from the encoding's notes. Pure: no
TensorFlow, no music21.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from preprocessing.encodings.base import Encoding
from trainer.plots import note_name
from trainer.repeats import longest_loop


@dataclass(frozen=True)
class SampleSummary:
    tokens: int
    distinct_tokens: int
    loop_pattern_length: int
    loop_covered_tokens: int
    lowest_pitch: int | None
    highest_pitch: int | None

    @property
    def loop_share(self) -> float:
        """The longest loop as a share of the piece (what ``evaluate`` reports as
        ``loop_share``)."""
        return self.loop_covered_tokens / self.tokens if self.tokens else 0.0

    def lines(self) -> list[str]:
        def name(midi: int | None) -> str:
            return "-" if midi is None else note_name(midi)

        loop = (
            f"{self.loop_covered_tokens} tokens ({self.loop_pattern_length}-token pattern repeated), "
            f"{100 * self.loop_share:.1f} % of the piece"
            if self.loop_covered_tokens
            else "none"
        )
        return [
            f"tokens generated   {self.tokens}",
            f"distinct tokens    {self.distinct_tokens}",
            f"longest loop       {loop}",
            f"pitch range        {name(self.lowest_pitch)} - {name(self.highest_pitch)}",
        ]


def summarize(tokens: Sequence[str], encoding: Encoding) -> SampleSummary:
    """Counts, the longest loop and the pitch range of ``tokens`` (their notes in ``encoding``)."""
    events = encoding.note_events(tokens)
    pitches = [event.pitch for event in events]
    period, covered = longest_loop(tokens)
    return SampleSummary(
        tokens=len(tokens),
        distinct_tokens=len(set(tokens)),
        loop_pattern_length=period,
        loop_covered_tokens=covered,
        lowest_pitch=min(pitches) if pitches else None,
        highest_pitch=max(pitches) if pitches else None,
    )


def settings_title(
    name: str,
    encoding: str,
    tokens: int,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """A piano roll's title: the file and every setting that made the piece."""
    how = (
        "argmax"
        if temperature == 0
        else f"temperature {temperature:g}, top-k {top_k or '-'}, top-p {top_p or '-'}"
    )
    return (
        f"{name}: {tokens} tokens, {encoding} encoding, {how}, seed {'-' if seed is None else seed}"
    )
