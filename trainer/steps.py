"""The distributed steps: the gradient step and the validation step, for either objective.

* :func:`train_steps_function` is the gradient step. ``strategy.run`` runs it on every replica;
  each replica's loss is divided by the *global* batch size and the optimizer sums the gradients
  over all replicas, so N replicas take the same step as one device with the whole batch. ``n``
  steps run inside one ``tf.function`` call. A window's loss is the cross-entropy of the token
  after it (``--objective last``) or the mean over every position of the window (``sequence``).
* :func:`eval_steps_function` sums what validation reports: at the last position of every window
  (the token after it, with its full context, the figure both objectives share), and for a
  ``sequence`` model also over every position (:func:`validation_metrics` names them).

Both read the batches of :func:`trainer.data.dataset`: ``(inputs, following)``, where
``following[:, -1]`` is each window's target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from trainer import model as model_lib
from trainer.baselines import EVERY_POSITION


@dataclass(frozen=True)
class Steps:
    """How many steps an epoch takes, for a global batch over this data."""

    global_batch: int
    per_epoch: int
    validation: int  # 0 when there are no validation windows

    @property
    def has_validation(self) -> bool:
        return self.validation > 0


def window_losses(model, following, probabilities):
    """Each window's cross-entropy: of the token after it, or (a ``sequence`` model) the mean over
    every position."""
    if model_lib.every_position(model):
        return tf.reduce_mean(model_lib.loss_fn(following, probabilities), axis=-1)
    return model_lib.loss_fn(following[:, -1], probabilities)


def train_steps_function(strategy, model, global_batch: int):
    """``train_steps(iterator, n)``: ``n`` distributed gradient steps in one ``tf.function``;
    returns the sum of the ``n`` global-batch mean losses, and the index of the first step whose
    loss was not finite (-1 when every one was)."""
    optimizer = model.optimizer
    mixed = model_lib.is_mixed(model)

    def step(inputs, following):
        with tf.GradientTape() as tape:
            probabilities = tf.cast(model(inputs, training=True), tf.float32)
            per_window = window_losses(model, following, probabilities)
            loss = tf.nn.compute_average_loss(per_window, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss) if mixed else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def train_steps(iterator, n):
        total = tf.constant(0.0, tf.float32)
        first_bad = tf.constant(-1, tf.int32)
        for i in tf.range(n):
            per_replica = strategy.run(step, args=next(iterator))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            total += loss
            bad = tf.logical_and(first_bad < 0, tf.logical_not(tf.math.is_finite(loss)))
            first_bad = tf.where(bad, i, first_bad)
        return total, first_bad

    return train_steps


def score_sums(targets, probabilities, weights, top_k: int):
    """The weighted sums of (cross-entropy, top-1 hits, top-k hits, weight) of probability rows
    against their targets."""
    per_row = model_lib.loss_fn(targets, probabilities)
    correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1), targets), tf.float32)
    in_top = tf.cast(tf.math.in_top_k(targets, probabilities, top_k), tf.float32)
    return tf.stack([tf.reduce_sum(value * weights) for value in (per_row, correct, in_top, 1.0)])


SUMS = 4
"""Values :func:`score_sums` gives, per set of targets (last position, then every position)."""


def eval_steps_function(strategy, model):
    """``eval_steps(iterator, n)`` on the weighted stream of
    ``trainer.data.dataset(..., weighted=True)``: :func:`score_sums` over ``n`` steps at the last
    position, then (a ``sequence`` model) over every position."""
    vocab_size = int(model.output_shape[-1])
    top_k = min(5, vocab_size)
    every = model_lib.every_position(model)
    width = 2 * SUMS if every else SUMS

    def step(inputs, following, weights):
        probabilities = tf.cast(model(inputs, training=False), tf.float32)
        last = model_lib.last_position(probabilities)
        sums = [score_sums(following[:, -1], last, weights, top_k)]
        if every:
            positions = tf.shape(following)[1]
            sums.append(
                score_sums(
                    tf.reshape(following, [-1]),
                    tf.reshape(probabilities, [-1, vocab_size]),
                    tf.repeat(weights, positions),
                    top_k,
                )
            )
        return tf.concat(sums, 0)

    @tf.function
    def eval_steps(iterator, n):
        total = tf.zeros([width], tf.float32)
        for _ in tf.range(n):
            per_replica = strategy.run(step, args=next(iterator))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return total

    return eval_steps


def validation_metrics(sums) -> dict[str, float]:
    """Validation loss, accuracy, top-5 accuracy and perplexity from ``eval_steps``' sums: at the
    last position, and (eight sums) over every position, named with ``_every_position``."""
    metrics: dict[str, float] = {}
    for start, suffix in ((0, ""), (SUMS, EVERY_POSITION)):
        if len(sums) < start + SUMS:
            break
        loss_sum, hits, top, count = (float(v) for v in sums[start : start + SUMS])
        val_loss = loss_sum / count
        metrics.update(
            {
                "val_loss" + suffix: val_loss,
                "val_accuracy" + suffix: hits / count,
                "val_top5_accuracy" + suffix: top / count,
                # exp(88.7) is float32's largest: beyond it TensorBoard's scalar would overflow
                "perplexity" + suffix: math.exp(val_loss) if val_loss < 88.0 else math.inf,
            }
        )
    return metrics
