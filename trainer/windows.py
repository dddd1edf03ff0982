"""From stored records to training windows, inside tf.data: the graph functions
:func:`trainer.data.dataset` maps with.

A *window* here is ``sequence_length + 1`` token ids of one piece: the model reads the first
``sequence_length`` and predicts the token after each (``following``, the window shifted by one);
the ``last`` objective uses only the last of those targets, the notebook's one prediction per
window. How records become windows (:mod:`preprocessing.examples` has the layouts):

* ``spans`` (:func:`every_window`): a span of ``m`` tokens holds ``m - sequence_length`` windows at
  stride 1 (``tf.signal.frame``); together the spans of a piece give each of its windows exactly
  once, the examples of the reference notebook.
* ``spans``, training under ``--objective sequence`` (:func:`crops`): a random offset below
  ``sequence_length`` each epoch, then windows that follow each other (they share one token, the
  target of one is the first input of the next), so every epoch trains each target about once, in
  a context cut at another place.
* ``windows`` (format 2): a record is one window already.

:func:`shift_batch` moves a batch of training windows by a shift drawn per window (``--transpose``).
Random choices are stateless draws seeded by ``--seed`` and a running count of the elements
(``Dataset.scan``), so a seed repeats a run, every epoch draws anew, and the file-based
auto-sharding of tf.distribute still finds the files.
"""

from __future__ import annotations

import tensorflow as tf

from preprocessing import examples, records

CROP_STREAM, SHIFT_STREAM = 1, 2
"""Told apart in the stateless seeds, so the offsets and the shifts are independent draws."""


def parse_span(serialized) -> tf.Tensor:
    """A serialized span record's token ids, ``[n]`` int64."""
    return tf.io.parse_single_example(serialized, examples.span_spec())[examples.TOKENS_FEATURE]


def parse_windows(manifest: records.Manifest):
    """``serialized record -> [n, sequence_length + 1]`` int64 windows: every window a record
    holds (all of a span's at stride 1; a stored window as it is)."""
    length = manifest.sequence_length
    if manifest.layout == records.WINDOWS:
        spec = examples.parse_spec(length)

        def stored(serialized):
            parsed = tf.io.parse_single_example(serialized, spec)
            target = parsed[examples.TARGET_FEATURE][None]
            return tf.concat([parsed[examples.INPUTS_FEATURE], target], 0)[None, :]

        return stored

    def every_window(serialized):
        return tf.signal.frame(parse_span(serialized), length + 1, 1, axis=0)

    return every_window


def crops(manifest: records.Manifest, seed: int):
    """A ``Dataset.scan`` function ``(count, serialized span) -> (count + 1, [n, L + 1] windows)``:
    windows of the span that follow each other from a random offset in ``[0, L)`` (at most the
    span's spare tokens), for the ``sequence`` objective; each trains ``L`` targets."""
    length = manifest.sequence_length

    def crop(count, serialized):
        span = parse_span(serialized)
        spare = tf.cast(tf.size(span), tf.int64) - (length + 1)
        highest = tf.minimum(tf.constant(length - 1, tf.int64), spare)
        offset = tf.random.stateless_uniform(
            [],
            seed=tf.stack([tf.constant(seed + CROP_STREAM, tf.int64), count]),
            minval=0,
            maxval=highest + 1,
            dtype=tf.int64,
        )
        return count + 1, tf.signal.frame(span[offset:], length + 1, length, axis=0)

    return crop


def shift_table(rows: list[list[int]], vocab_size: int) -> tf.Tensor:
    """``transpositions.json``'s rows with the identity put in the middle (shift 0), flattened:
    ``table[s * vocab_size + id]`` is what ``id`` becomes under the ``s``-th of ``-K..K``, or -1."""
    half = len(rows) // 2
    identity = list(range(vocab_size))
    ordered = [*rows[:half], identity, *rows[half:]]
    return tf.constant([i for row in ordered for i in row], tf.int64)


def shift_batch(table: tf.Tensor, vocab_size: int, seed: int):
    """A ``Dataset.scan`` function ``(count, windows [B, L + 1]) -> (count + 1, moved windows)``:
    each window moved by a shift drawn uniformly from ``-K..K`` (0 included, so the data as it is
    keeps its share), through ``table`` (:func:`shift_table`); a window with a token that its shift
    cannot move stays as it is."""
    shifts = int(table.shape[0]) // vocab_size

    def shift(count, windows):
        drawn = tf.random.stateless_uniform(
            tf.shape(windows)[:1],
            seed=tf.stack([tf.constant(seed + SHIFT_STREAM, tf.int64), count]),
            minval=0,
            maxval=shifts,
            dtype=tf.int64,
        )
        moved = tf.gather(table, drawn[:, None] * vocab_size + windows)
        movable = tf.reduce_all(moved >= 0, axis=1, keepdims=True)
        return count + 1, tf.where(movable, moved, windows)

    return shift
