"""Pure functions for generation: choosing the next token, describing a sample, rendering it.

No TensorFlow and no Keras here, only numpy (matplotlib for the piano roll, in :mod:`trainer.plots`),
so each piece is testable on its own and shared by the command-line generator, ``evaluate`` and the
training loop's TensorBoard samples. Everything that depends on what a token means (its notes, their
onsets and durations) comes from the encoding's ``note_events`` (:func:`encoding_for`), so the piano
roll, the audio and the measures work for every encoding.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from preprocessing import encoding as encoding_lib
from preprocessing import records
from preprocessing.encoding import Encoding, Grammar, GrammarState, NoteEvent

SAMPLE_RATE = 16_000
"""Audio previews: 16 kHz mono is plenty for a piano sketch and keeps TensorBoard event files small."""
SECONDS_PER_QUARTER = 0.5
"""120 bpm, the tempo both encodings' ``decode`` writes into the MIDI file."""
RELEASE_SECONDS = 0.08
"""Each synthesised note fades out over this long after its end, so notes do not click off."""
TAIL_SECONDS = 0.25
"""Silence-and-release after the last note's end: a WAV is ``end of the last note + TAIL_SECONDS`` long."""
REFERENCE = encoding_lib.get("reference")
"""The reference encoding: what a caller that names no encoding means (it imports music21 when used)."""


def encoding_for(manifest: records.Manifest, directory: str) -> Encoding:
    """The encoding of a data or model folder's tokens: its manifest's name, rebuilt from the files it
    saved beside ``vocab.json`` (REMI: ``tokenizer.json``), checked against the manifest's hash.

    The one place generation, ``evaluate`` and the trainer's samples choose an encoding. The
    reference encoding saves nothing and is the shared :data:`REFERENCE` (no file is read). A missing,
    unreadable or mismatched saved tokenizer is a :class:`records.DataError` of one line.
    """
    name = encoding_lib.TOKEN_FORMATS.get(manifest.encoding)
    if name is None:
        raise records.DataError(f"manifest.json names the token encoding {manifest.encoding!r}, which this "
                                f"version cannot compose or measure")
    return records.saved_encoding(directory, manifest, remedy=None) or REFERENCE


# --------------------------------------------------------------------------- the grammar while sampling


def grammar_states(grammar: Grammar | None, primers: np.ndarray) -> list[GrammarState] | None:
    """One grammar state per primer row, each having read its row's tokens; None for no grammar or a
    free one (the reference's): then nothing is masked and a seeded run draws exactly what it drew
    before grammars existed."""
    if grammar is None or grammar.free:
        return None
    return [grammar.start([grammar.vocab[i] for i in row]) for row in np.asarray(primers)]


def draw(probabilities: np.ndarray, states: list[GrammarState] | None, vocab: Sequence[str], remaining: int,
         temperature: float, top_k: int | None, top_p: float | None, rng: np.random.Generator) -> list[int]:
    """One :func:`sample_next` per row of ``probabilities``, each under its row's grammar state (which
    then reads the drawn token, ``vocab[id]``). ``remaining`` (this token included) lets the grammar
    end the piece whole (:meth:`GrammarState.allowed_within`)."""
    if states is None:
        return [sample_next(p, temperature, top_k, rng, top_p) for p in probabilities]
    drawn = []
    for p, state in zip(probabilities, states):
        token_id = sample_next(p, temperature, top_k, rng, top_p, state.allowed_within(remaining))
        state.push(vocab[token_id])
        drawn.append(token_id)
    return drawn


def piece_tokens(grammar: Grammar | None, vocab: Sequence[str], primer: Sequence[int], ids: Sequence[int]
                 ) -> list[str]:
    """The tokens of a composed piece as written and measured: the generated ids' tokens, behind the
    primer's :meth:`Grammar.lead_in` (REMI: a trailing ``Pitch`` whose ``Duration`` was generated), and
    without a last ``Pitch`` left unfinished (only when ``--length`` is too short to finish a note;
    :meth:`GrammarState.allowed_within` ends every longer piece whole). The reference: the tokens."""
    tokens = [vocab[i] for i in ids]
    if grammar is None or grammar.free:
        return tokens
    tokens = grammar.lead_in([vocab[i] for i in primer]) + tokens
    return tokens if grammar.start(tokens).finished else tokens[:-1]


# --------------------------------------------------------------------------- choosing the next token


def _allowed_mask(allowed: np.ndarray | None, size: int) -> np.ndarray | None:
    if allowed is None:
        return None
    mask = np.asarray(allowed, dtype=bool).reshape(-1)
    if mask.size != size:
        raise ValueError(f"the mask of allowed ids has {mask.size} entries for {size} probabilities")
    if not mask.any():
        raise ValueError("the mask of allowed ids allows nothing")
    return mask


def distribution(probabilities: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, allowed: np.ndarray | None = None) -> np.ndarray:
    """The distribution :func:`sample_next` draws from: ``probabilities`` reshaped by each setting in turn.

    In the order Hugging Face's samplers apply them: ids outside ``allowed`` (a boolean mask, e.g. a
    grammar's) get probability 0 exactly (``-inf`` logits, so no floor gives them a chance); then the
    temperature (``p ** (1 / temperature)``, renormalised); then ``top_k`` keeps the ``k`` likeliest
    ids (ties at the cut stay); then ``top_p`` (nucleus sampling, Holtzman et al. 2020) keeps the
    smallest set of likeliest ids whose probability reaches ``top_p``, at least one id.
    """
    if not temperature > 0:
        raise ValueError("temperature must be > 0 for a distribution (0 is the argmax)")
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    logits = np.log(np.maximum(p, 1e-30)) / temperature  # the floor keeps every allowed id drawable
    mask = _allowed_mask(allowed, p.size)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    if top_k is not None and top_k < np.isfinite(logits).sum():
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    if top_p is not None and top_p < 1:
        order = np.argsort(-weights, kind="stable")
        before = np.cumsum(weights[order]) - weights[order]  # the mass of the likelier ids
        nucleus = np.zeros_like(weights)
        keep = order[before < top_p]
        nucleus[keep] = weights[keep]
        weights = nucleus / nucleus.sum()
    return weights


def sample_next(probabilities: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator,
                top_p: float | None = None, allowed: np.ndarray | None = None) -> int:
    """The next token id from a probability vector.

    ``temperature`` 0 is the argmax among the allowed ids (the reference's decoding). Otherwise one id
    is drawn with ``rng`` (so a seed makes a run repeatable) from :func:`distribution`.
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if temperature == 0:
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        mask = _allowed_mask(allowed, p.size)
        return int(np.argmax(p if mask is None else np.where(mask, p, -np.inf)))
    weights = distribution(probabilities, temperature, top_k, top_p, allowed)
    return int(rng.choice(weights.size, p=weights))


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

    @property
    def loop_share(self) -> float:
        """The longest loop as a share of the piece (what ``evaluate`` reports as ``loop_share``)."""
        return self.loop_covered_tokens / self.tokens if self.tokens else 0.0

    def lines(self) -> list[str]:
        from music21 import pitch

        def name(midi: int | None) -> str:
            return "-" if midi is None else pitch.Pitch(midi=midi).nameWithOctave

        loop = (
            f"{self.loop_covered_tokens} tokens ({self.loop_pattern_length}-token pattern repeated), "
            f"{100 * self.loop_share:.1f} % of the piece"
            if self.loop_covered_tokens else "none"
        )
        return [
            f"tokens generated   {self.tokens}",
            f"distinct tokens    {self.distinct_tokens}",
            f"longest loop       {loop}",
            f"pitch range        {name(self.lowest_pitch)} - {name(self.highest_pitch)}",
        ]


def summarize(tokens: Sequence[str], encoding: Encoding | None = None) -> SampleSummary:
    """Counts, the longest loop and the pitch range of ``tokens`` (in ``encoding``, default the reference)."""
    events = (encoding or REFERENCE).note_events(tokens)
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


def settings_title(name: str, encoding: str, tokens: int, temperature: float, top_k: int | None = None,
                   top_p: float | None = None, seed: int | None = None) -> str:
    """A piano roll's title: the file and every setting that made the piece."""
    how = "argmax" if temperature == 0 else f"temperature {temperature:g}, top-k {top_k or '-'}, top-p {top_p or '-'}"
    return f"{name}: {tokens} tokens, {encoding} encoding, {how}, seed {'-' if seed is None else seed}"


def piano_roll(tokens: Sequence[str], encoding: Encoding | None = None, title: str = "") -> np.ndarray:
    """The piano roll of ``tokens`` as ``uint8`` RGB (:func:`trainer.plots.piano_roll`), drawn from
    the encoding's notes (default the reference encoding), so it shows their real durations."""
    from trainer import plots

    return plots.piano_roll((encoding or REFERENCE).note_events(tokens), title=title)


# --------------------------------------------------------------------------- audio


def synthesize(events: Sequence[NoteEvent], sample_rate: int = SAMPLE_RATE,
               seconds_per_quarter: float = SECONDS_PER_QUARTER) -> np.ndarray:
    """A small additive synthesiser: each note as a decaying harmonic tone, float32 in [-1, 1].

    Each note starts at its onset and lasts its duration (quarter notes at ``seconds_per_quarter``,
    120 bpm as the decoded MIDI file plays), then fades over :data:`RELEASE_SECONDS`. The result is
    ``end of the last note + TAIL_SECONDS`` long. Enough to hear a model in TensorBoard or in a
    ``--wav`` file; no soundfont needed.
    """
    end = max((e.onset + e.duration for e in events), default=0.0)
    out = np.zeros(int(round((end * seconds_per_quarter + TAIL_SECONDS) * sample_rate)), dtype=np.float64)
    release = int(RELEASE_SECONDS * sample_rate)
    for event in events:
        start = int(round(event.onset * seconds_per_quarter * sample_rate))
        held = max(1, int(round(event.duration * seconds_per_quarter * sample_rate)))
        t = np.arange(min(held + release, out.size - start)) / sample_rate
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.5)  # a piano-like decay: long notes stay audible
        fade = np.clip((held + release - np.arange(t.size)) / release, 0.0, 1.0)
        freq = 440.0 * 2.0 ** ((event.pitch - 69) / 12.0)
        tone = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3) if freq * h < sample_rate / 2)
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
