"""What a preprocessing run prints at its end: one screen of counts, and the warnings they call
for.

Apart from :mod:`preprocessing.pipeline` (the graph and the run) so that each can grow: the summary
reads only the manifest the run wrote (or a failed run's would-be manifest), never Beam.
"""

from __future__ import annotations

from preprocessing import records, transpositions
from preprocessing.encodings import registry


def summary(manifest: records.Manifest, output: str, report: str | None = None) -> str:
    """The one-screen report printed at the end of a run (of a failed one: ``report`` holds its
    would-be manifest and its dead letters, and nothing was published)."""
    c = manifest.counts
    dead = report or records.join(output, records.DEAD_LETTER_FILE)
    undercounted = c.get("headers_undercounted", 0)
    lines = [
        f"preprocessing finished: {output} (run {manifest.run_id})"
        if report is None
        else f"preprocessing failed: nothing was published to {output} (run {manifest.run_id})",
        f"  files matched      {c['files_matched']:>10,}",
        f"  parsed             {c['files_parsed']:>10,}"
        + (
            f"   ({undercounted:,} with more tracks than their header declares: all were read)"
            if undercounted
            else ""
        ),
        f"  failed             {c['files_failed']:>10,}"
        + (f"   (reasons in {dead})" if c["files_failed"] else ""),
        f"  empty (no notes)   {c['pieces_empty']:>10,}",
        f"  too short          {c['pieces_too_short']:>10,}   (fewer than {manifest.sequence_length + 1} tokens)",
        f"  tokens             {c['tokens']:>10,}   vocabulary {manifest.vocab_size:,} (hash {manifest.vocab_hash})",
        f"  train windows      {c['train_windows']:>10,}   from {c['train_pieces']:,} pieces, "
        f"stored as {c.get('train_spans', 0):,} spans in {len(manifest.train_shards)} shard(s)",
        f"  validation windows {c['validation_windows']:>10,}   from {c['validation_pieces']:,} pieces, "
        f"stored as {c.get('validation_spans', 0):,} spans in {len(manifest.validation_shards)} shard(s)",
        *([transposition_line(manifest)] if manifest.transpose else []),
        *([learned_line(manifest)] if manifest.bpe_vocab else []),
        f"  sequence length {manifest.sequence_length}, spans of up to "
        f"{manifest.sequence_length + manifest.stride} tokens every {manifest.stride} (--stride), "
        f"parts={manifest.parts}, encoding {registry.by_token_format(manifest.encoding).name}; "
        "windows never cross from one piece into the next",
    ]
    warning = validation_warning(manifest)
    return "\n".join(lines + ([warning] if warning else []))


def transposition_line(manifest: records.Manifest) -> str:
    """What ``--transpose K`` means for this output: shifts drawn when the trainer reads, and how
    many training windows a shift cannot move (they train unshifted when it is drawn)."""
    c, k = manifest.counts, manifest.transpose
    unmoved = 100 * transpositions.unmoved_share(c, k)
    return (
        f"  transposition      {'±' + str(k):>10}   semitones, drawn per training window when "
        f"training reads it; {c.get('windows_not_always_movable', 0):,} windows hold a note some "
        f"shift cannot move ({unmoved:.2g} % of the draws train unshifted)"
    )


def learned_line(manifest: records.Manifest) -> str:
    """``--bpe-vocab N``: how many tokens were learned, from how much, and what it saved."""
    b, c = manifest.bpe_vocab, manifest.counts
    return (
        f"  learned vocabulary {b['learned']:>10,}   tokens (--bpe-vocab {b['asked']:,}) from "
        f"{b['sample_pieces']:,} training pieces, {b['sample_tokens']:,} tokens; the pieces' "
        f"{c.get('base_tokens', 0):,} base tokens are {c['tokens']:,} tokens"
    )


def validation_warning(manifest: records.Manifest) -> str | None:
    """Why no window went to validation, and what to do, when pieces were windowed but none held
    out.

    Pieces, not windows, are split by a stable hash of their path, so with few pieces the validation
    share can come out empty; the trainer would then train without validation metrics or baselines.
    """
    c = manifest.counts
    if c.get("validation_windows", 0) or not c.get("train_windows", 0):
        # a validation split exists, or there is nothing to train on at all (an error of its own)
        return None
    fraction = manifest.validation_fraction
    if fraction == 0:
        return (
            "warning: no validation windows (--validation-fraction 0): training will report no validation "
            "loss, accuracy or baselines"
        )
    pieces = c.get("train_pieces", 0)
    unusable = c.get("pieces_too_short", 0) + c.get("pieces_empty", 0)
    why = (
        f"the split (a stable hash of each file's path) held none of the {pieces:,} usable piece(s) out for "
        f"validation at --validation-fraction {fraction:g}"
    )
    if unusable:
        why += f" ({unusable:,} more empty or too short)"
    return (
        f"warning: no piece went to validation: {why}. Training will report no validation metrics; "
        "add more pieces or raise --validation-fraction"
    )
