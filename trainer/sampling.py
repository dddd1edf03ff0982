"""Pure functions for generation: choosing the next token, describing a sample, rendering it.

No TensorFlow and no Keras here, only numpy, so each piece is testable on its own and shared by the
command-line generator and the training loop's TensorBoard samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from preprocessing import notes

SAMPLE_RATE = 16_000
"""Audio previews: 16 kHz mono is plenty for a piano sketch and keeps TensorBoard event files small."""


def sample_next(probabilities: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """The next token id from a probability vector.

    ``temperature`` 0 is the argmax (the reference's decoding). Otherwise the distribution is sharpened
    or flattened as ``p ** (1 / temperature)`` and, with ``top_k``, restricted to the ``k`` likeliest
    tokens before one is drawn with ``rng`` (so a seed makes a run repeatable).
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(p))
    logits = np.log(np.maximum(p, 1e-30)) / temperature
    if top_k is not None and 0 < top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    logits -= logits.max()
    weights = np.exp(logits)
    return int(rng.choice(weights.size, p=weights / weights.sum()))


def longest_loop(tokens: Sequence[str]) -> tuple[int, int]:
    """``(pattern_length, covered_tokens)`` of the longest stretch that is one pattern repeated back to back.

    A stretch counts when the pattern occurs at least twice in a row; ``(0, 0)`` when nothing
    repeats. Greedy decoding tends to fall into such loops, and this number makes them visible.
    """
    n = len(tokens)
    best = (0, 0)
    for period in range(1, n // 2 + 1):
        run = 0
        for i in range(n - period):
            run = run + 1 if tokens[i] == tokens[i + period] else 0
            covered = run + period
            if run >= period and covered > best[1]:
                best = (period, covered)
    return best


@dataclass(frozen=True)
class SampleSummary:
    tokens: int
    distinct_tokens: int
    loop_pattern_length: int
    loop_covered_tokens: int
    lowest_pitch: int | None
    highest_pitch: int | None

    def lines(self) -> list[str]:
        from music21 import pitch

        def name(midi: int | None) -> str:
            return "-" if midi is None else pitch.Pitch(midi=midi).nameWithOctave

        loop = (
            f"{self.loop_covered_tokens} tokens ({self.loop_pattern_length}-token pattern repeated)"
            if self.loop_covered_tokens else "none"
        )
        return [
            f"tokens generated   {self.tokens}",
            f"distinct tokens    {self.distinct_tokens}",
            f"longest loop       {loop}",
            f"pitch range        {name(self.lowest_pitch)} - {name(self.highest_pitch)}",
        ]


def summarize(tokens: Sequence[str]) -> SampleSummary:
    pitches = [m for token in tokens for m in notes.token_midi_pitches(token)]
    period, covered = longest_loop(tokens)
    return SampleSummary(
        tokens=len(tokens),
        distinct_tokens=len(set(tokens)),
        loop_pattern_length=period,
        loop_covered_tokens=covered,
        lowest_pitch=min(pitches) if pitches else None,
        highest_pitch=max(pitches) if pitches else None,
    )


def piano_roll(tokens: Sequence[str], cell: int = 4) -> np.ndarray:
    """A time × pitch picture of ``tokens``: ``uint8`` RGB, pitch upwards, one column block per token.

    Rows cover the sample's pitch range plus a margin; every sounding pitch of a token is a bright
    cell (chords are columns of several cells), octave lines of C are drawn faintly for orientation.
    """
    pitches = [notes.token_midi_pitches(token) for token in tokens]
    flat = [m for group in pitches for m in group] or [60]
    low, high = max(0, min(flat) - 2), min(127, max(flat) + 2)
    rows, cols = (high - low + 1) * cell, max(1, len(tokens)) * cell
    image = np.full((rows, cols, 3), 24, dtype=np.uint8)
    for midi in range(low, high + 1):
        if midi % 12 == 0:
            row = (high - midi) * cell
            image[row : row + cell, :, :] = 48
    for step, group in enumerate(pitches):
        for midi in group:
            row = (high - midi) * cell
            image[row : row + cell, step * cell : (step + 1) * cell - 1] = (250, 190, 60)
    return image


def synthesize(tokens: Sequence[str], step_seconds: float = 0.25, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A small additive synthesiser: each token's pitches as decaying harmonic tones, float32 in [-1, 1].

    One token every ``step_seconds`` (0.5 quarter lengths at 120 bpm), as the decoded MIDI plays them.
    Enough to hear a model's progress in TensorBoard; no soundfont needed.
    """
    step = int(round(step_seconds * sample_rate))
    note_len = int(step * 1.6)
    total = step * max(1, len(tokens)) + note_len
    out = np.zeros(total, dtype=np.float64)
    t = np.arange(note_len) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * 5.0)
    for index, token in enumerate(tokens):
        start = index * step
        for midi in notes.token_midi_pitches(token):
            freq = 440.0 * 2.0 ** ((midi - 69) / 12.0)
            tone = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3) if freq * h < sample_rate / 2)
            out[start : start + note_len] += envelope * tone
    peak = np.max(np.abs(out))
    return (out / peak * 0.8 if peak > 0 else out).astype(np.float32)
