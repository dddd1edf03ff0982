"""The table ``lstm-composer evaluate`` prints: its report (what the JSON file holds) as text.

Pure formatting, apart from :mod:`trainer.evaluate` so that the command's logic and its layout can
each grow: next-token scores beside the baselines, bits per beat and per note, the unprimed music
measures, and with ``--continue`` the continuations of held-out pieces against the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainer import continuation_measures, measures
from trainer.baselines import EVERY_POSITION
from trainer.bits_per_beat import BITS_PER_BEAT, BITS_PER_NOTE


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(report: Mapping[str, Any]) -> str:
    """The report as the one table ``evaluate`` prints."""

    nt, music, s = report["next_token"], report["music"], report["settings"]
    lines = [
        f"evaluation of {report['model_dir']} on {report['data_dir']} ({report['encoding']} encoding)",
        "",
        f"next token, {nt['validation_windows']:,} validation windows      model     bigram    unigram",
    ]
    for suffix, where in (("", "after the window"), (EVERY_POSITION, "at every position")):
        if "val_accuracy" + suffix not in nt:
            continue
        lines += [
            f"  {where + ': accuracy':<43}{pct(nt['val_accuracy' + suffix]):>9}  "
            f"{pct(nt.get('bigram_val_accuracy' + suffix)):>9}  "
            f"{pct(nt.get('unigram_val_accuracy' + suffix)):>9}",
            f"  {where + ': top-5 accuracy':<43}{pct(nt['val_top5_accuracy' + suffix]):>9}",
            f"  {where + ': perplexity':<43}{nt['perplexity' + suffix]:>9.2f}",
        ]
    rate = report.get("validation_rate") or {}
    if nt.get(BITS_PER_BEAT) is not None:
        lines.append(
            f"  {'after the window: bits per beat, per note':<43}{nt[BITS_PER_BEAT]:>9.2f}  "
            f"{nt.get(BITS_PER_NOTE) or math.nan:>9.2f}   ({rate['tokens_per_beat']:.3f} tokens per "
            f"beat, {rate['tokens_per_note'] or math.nan:.3f} per note)"
        )
    lines += [
        "",
        f"music: {music['generated_pieces']} composed pieces of {s['length']} tokens (temperature "
        f"{s['temperature']}, top-k {s['top_k'] or '-'}, top-p {s['top_p'] or '-'}, seed {s['seed']})",
        f"       against {music['validation_excerpts']} validation excerpts of "
        f"{music['validation_excerpt_tokens'][0]}-{music['validation_excerpt_tokens'][1]} tokens",
        f"  {'measure':<32}{'composed':>10}{'validation':>12}",
    ]
    for name in measures.MEASURES:
        lines.append(
            f"  {name:<32}{num(music['generated'][name]):>10}{num(music['validation'][name]):>12}"
        )
    lines.append(f"  {measures.OVERLAP:<32}{num(music[measures.OVERLAP]):>10}")
    lines += [f"  n/a: {name}: {why}" for name, why in music["not_applicable"].items()]
    if "continuations" in report:
        lines += continuation_lines(report["continuations"])
    return "\n".join(lines)


def continuation_lines(continuations: Mapping[str, Any]) -> list[str]:
    """The ``--continue`` part: each measure's mean over the pieces, composed against real, and
    the mean overlap of each histogram pair."""
    summary, sizes = continuations["summary"], continuations["continuation_tokens"]
    lines = [
        "",
        f"continuations: {summary['pieces']} validation pieces primed with their first "
        f"{continuations['opening_bars']} bars, continued for {sizes[0]}-{sizes[1]} tokens each "
        f"(as long as the real continuation, at most --length); {continuations['too_short']} "
        "shorter than the opening skipped",
        f"  {'measure (mean over the pieces)':<32}{'composed':>10}{'real':>12}",
    ]
    for name in continuation_measures.MEASURES:
        lines.append(
            f"  {name:<32}{num(summary['composed'][name]):>10}{num(summary['real'][name]):>12}"
        )
    lines.append("  histogram overlap, composed with real (1: the same)")
    for name in continuation_measures.OVERLAPS:
        lines.append(f"  {name:<32}{num(summary['overlaps'][name]):>10}")
    lines += [f"  n/a: {name}: {why}" for name, why in continuations["not_applicable"].items()]
    return lines
