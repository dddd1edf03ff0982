"""Hearing a piece without a soundfont: a small additive synthesiser and a WAV writer. Pure numpy.

For ``generate --wav`` and the trainer's TensorBoard audio: the notes come from the encoding's
``note_events``, so a REMI piece sounds with its real durations.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence

import numpy as np

from preprocessing.encodings.base import NoteEvent

SAMPLE_RATE = 16_000
"""Audio previews: 16 kHz mono is plenty for a piano sketch and keeps TensorBoard event files
small."""
SECONDS_PER_QUARTER = 0.5
"""120 bpm, the tempo both encodings' ``decode`` writes into the MIDI file."""
RELEASE_SECONDS = 0.08
"""Each synthesised note fades out over this long after its end, so notes do not click off."""
TAIL_SECONDS = 0.25
"""Silence-and-release after the last note's end: a WAV is
``end of the last note + TAIL_SECONDS`` long."""


def synthesize(
    events: Sequence[NoteEvent],
    sample_rate: int = SAMPLE_RATE,
    seconds_per_quarter: float = SECONDS_PER_QUARTER,
) -> np.ndarray:
    """A small additive synthesiser: each note as a decaying harmonic tone, float32 in [-1, 1].

    Each note starts at its onset and lasts its duration (quarter notes at ``seconds_per_quarter``,
    120 bpm as the decoded MIDI file plays), then fades over :data:`RELEASE_SECONDS`. The result is
    ``end of the last note + TAIL_SECONDS`` long. Enough to hear a model in TensorBoard or in a
    ``--wav`` file; no soundfont needed.
    """
    end = max((e.onset + e.duration for e in events), default=0.0)
    out = np.zeros(
        int(round((end * seconds_per_quarter + TAIL_SECONDS) * sample_rate)), dtype=np.float64
    )
    release = int(RELEASE_SECONDS * sample_rate)
    for event in events:
        start = int(round(event.onset * seconds_per_quarter * sample_rate))
        held = max(1, int(round(event.duration * seconds_per_quarter * sample_rate)))
        t = np.arange(min(held + release, out.size - start)) / sample_rate
        # a piano-like decay: long notes stay audible
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.5)
        fade = np.clip((held + release - np.arange(t.size)) / release, 0.0, 1.0)
        freq = 440.0 * 2.0 ** ((event.pitch - 69) / 12.0)
        tone = sum(
            np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3) if freq * h < sample_rate / 2
        )
        out[start : start + t.size] += envelope * fade * tone
    peak = np.max(np.abs(out)) if out.size else 0.0
    return (out / peak * 0.8 if peak > 0 else out).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """``samples`` (float in [-1, 1], mono) as a 16-bit PCM WAV file, which every player reads."""
    pcm = (np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
