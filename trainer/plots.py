"""The piano roll a musician can read: a matplotlib figure of a piece's notes, as an RGB image.

Pitch runs up the y axis, labelled with the note name of every C (``C4`` is MIDI 60, middle C), the
black keys shaded as on a keyboard; time runs along the x axis in beats (quarter notes), with a line
at every bar (4/4 unless told otherwise: neither encoding records a metre, see ``docs/ENCODING.md``)
and fainter ones at every beat. Each note is a bar from its onset for its real duration, as the
encoding's ``note_events`` give it. A long piece is folded into rows of :data:`BARS_PER_ROW` bars,
as a score is folded into systems, so a 500-token piece (62 bars in the reference encoding) stays
readable at a glance in an image viewer and in TensorBoard (4 rows, 1400 pixels wide).

Drawn with matplotlib's object API on an Agg canvas: no pyplot, no global backend switch, no display
needed, and the same pixels for the PNG file and the TensorBoard image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from preprocessing.encodings.base import NoteEvent

BARS_PER_ROW = 16
MAX_ROWS = 8
"""Longer pieces put more bars into each row instead of adding rows."""
WIDTH_INCHES, DPI = 14.0, 100
BLACK_KEYS = frozenset({1, 3, 6, 8, 10})
NOTE_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")
NOTE_COLOUR, NOTE_EDGE = "#e8902a", "#7a3f00"


def note_name(midi: int) -> str:
    """``C4`` for 60: scientific pitch notation, the names music21 gives the reference's note
    tokens."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_window(
    pitches: Sequence[int], margin: int = 2, minimum_span: int = 12
) -> tuple[int, int]:
    """The lowest and highest pitch row to draw: the notes' range plus a margin, at least an
    octave."""
    if not pitches:
        return 60 - minimum_span // 2, 60 + minimum_span // 2
    low, high = min(pitches) - margin, max(pitches) + margin
    short = minimum_span - (high - low)
    if short > 0:
        low, high = low - short // 2, high + short - short // 2
    return max(0, low), min(127, high)


def layout(total_beats: float, beats_per_bar: int) -> tuple[int, int]:
    """``(rows, bars_per_row)`` for a piece of ``total_beats`` beats."""
    bars = max(1, math.ceil(total_beats / beats_per_bar - 1e-9))
    per_row = max(BARS_PER_ROW, math.ceil(bars / MAX_ROWS))
    return math.ceil(bars / per_row), per_row


def piano_roll(events: Sequence[NoteEvent], title: str = "", beats_per_bar: int = 4) -> np.ndarray:
    """The figure described in the module docstring, rendered as ``uint8`` RGB
    ``(height, width, 3)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    end = max((e.onset + e.duration for e in events), default=0.0)
    rows, per_row = layout(end, beats_per_bar)
    low, high = pitch_window([e.pitch for e in events])
    row_inches = float(np.clip(0.06 * (high - low + 1), 1.3, 3.2))
    figure = Figure(figsize=(WIDTH_INCHES, 0.8 + rows * (row_inches + 0.35)), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    row_beats = per_row * beats_per_bar
    for index, ax in enumerate(axes):
        first = index * row_beats
        ax.set_xlim(first, first + row_beats)
        ax.set_ylim(low - 0.5, high + 0.5)
        for midi in range(low, high + 1):
            if midi % 12 in BLACK_KEYS:
                ax.axhspan(midi - 0.5, midi + 0.5, color="#ececec", lw=0, zorder=0)
        ax.set_yticks([m for m in range(low, high + 1) if m % 12 == 0])
        ax.set_yticklabels([note_name(m) for m in ax.get_yticks().astype(int)], fontsize=8)
        ax.yaxis.grid(True, color="#9aa7b8", lw=0.6, zorder=0.5)
        ax.vlines(
            np.arange(first, first + row_beats + 1),
            low - 0.5,
            high + 0.5,
            colors="#dde2ea",
            lw=0.5,
            zorder=0.6,
        )
        bars = np.arange(first, first + row_beats + 1, beats_per_bar)
        ax.vlines(bars, low - 0.5, high + 0.5, colors="#4a5566", lw=0.9, zorder=0.7)
        ax.set_xticks(bars)
        ax.tick_params(axis="x", labelsize=8)
        notes = [
            Rectangle((e.onset, e.pitch - 0.42), e.duration, 0.84)
            for e in events
            if e.onset < first + row_beats and e.onset + e.duration > first
        ]
        ax.add_collection(
            PatchCollection(notes, facecolor=NOTE_COLOUR, edgecolor=NOTE_EDGE, lw=0.4, zorder=2)
        )
        ax.set_ylabel("pitch", fontsize=8)
    axes[-1].set_xlabel(
        f"time in beats (quarter notes); a line at every bar of {beats_per_bar} beats", fontsize=9
    )
    figure.suptitle(title or "piano roll", fontsize=11)
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
