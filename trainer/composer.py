"""Running a trained network token by token: the single-step copy and its carried state.

Two ways to run the network over time (``--context``, :data:`trainer.sampling.CONTEXTS`):

* ``carry`` (default, fast): a single-step copy of the trained network (same weights; each LSTM
  takes and returns its state) reads the primer one token at a time and then each new token,
  carrying the LSTM states forward. One step per token instead of a whole window: the cost of a
  token no longer grows with ``sequence_length``. The model of context differs from the reference:
  the state remembers everything since the primer, as char-rnn style samplers do.
* ``window`` (the reference's method, exactly): for each new token the last ``sequence_length``
  tokens are run through the full network from a zero state, then the window slides by one.

Each step's probabilities become a token through :mod:`trainer.sampling` (temperature, ``top_k``,
``top_p``, with a seeded generator, so a seed repeats a run exactly), every draw masked by the
encoding's sampling grammar: one state per sample that first reads the primer's tokens, so the first
token continues the primer legally and every REMI piece decodes whole
(:mod:`preprocessing.encodings.remi_grammar`); the reference's grammar is free and masks nothing,
so its seeded runs draw what they always drew. Used by ``generate``, ``evaluate`` and the trainer's
TensorBoard samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from preprocessing.encodings.grammar import Grammar
from trainer import model as model_lib
from trainer import sampling


def step_model(model: keras.Model) -> tuple[keras.Model, list[tuple[layers.LSTM, layers.LSTM]]]:
    """A copy of ``model`` that reads one token and the LSTM states, and returns probabilities and
    states.

    Inputs ``[token_ids (batch, 1), h_1, c_1, …, h_n, c_n]``; outputs
    ``[probabilities, h_1', c_1', …]``. LSTM layers are rebuilt with ``return_state=True`` and the
    trained weights; every other layer (embedding or rescaling, dropout, batch norm, dense) is the
    trained layer itself, shared. A model trained with ``--objective sequence`` runs its head on
    the one position and gives that row. Also returns the (trained, single-step) LSTM pairs, whose
    weights must be copied again when the trained model changes (:meth:`Composer.sync_weights`).
    """
    token = keras.Input(shape=(1,), dtype="int64", name="token_id")
    x = token
    state_inputs, state_outputs, pairs = [], [], []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Reshape):  # the reference's (seq,) -> (seq, 1) features
            x = layers.Reshape((1,) + tuple(layer.target_shape[1:]))(x)
        elif isinstance(layer, layers.LSTM):
            h = keras.Input(shape=(layer.units,), name=f"{layer.name}_h")
            c = keras.Input(shape=(layer.units,), name=f"{layer.name}_c")
            single = layers.LSTM(
                layer.units,
                return_sequences=layer.return_sequences,
                return_state=True,
                dtype=layer.dtype_policy,
                name=f"{layer.name}_step",
            )
            x, h_out, c_out = single(x, initial_state=[h, c])
            single.set_weights(layer.get_weights())
            pairs.append((layer, single))
            state_inputs += [h, c]
            state_outputs += [h_out, c_out]
        else:
            x = layer(x)
    if model_lib.every_position(model):  # its one step's row: [batch, 1, vocab] -> [batch, vocab]
        x = layers.Reshape((int(model.output_shape[-1]),), dtype="float32")(x)
    return keras.Model(
        [token, *state_inputs], [x, *state_outputs], name=f"{model.name}_step"
    ), pairs


def lstm_units(model: keras.Model) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, layers.LSTM)]


class Composer:
    """Runs a trained network token by token, in either context mode, each draw under ``grammar``
    (an encoding's sampling grammar over the model's vocabulary; None or a free one masks
    nothing)."""

    def __init__(self, model: keras.Model, sequence_length: int, grammar: Grammar | None = None):
        self.model = model
        self.sequence_length = sequence_length
        self.grammar = grammar
        self.units = lstm_units(model)
        self._pairs: list = []
        self._full = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._step = None

    def _ensure_step(self):
        if self._step is None:
            single, self._pairs = step_model(self.model)
            self._step = tf.function(
                lambda inputs: single(inputs, training=False), reduce_retracing=True
            )

    def sync_weights(self) -> None:
        """Copy the trained LSTM weights into the single-step copy again (after the model was
        trained on)."""
        for trained, single in self._pairs:
            single.set_weights(trained.get_weights())

    def zero_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, u), np.float32) for u in self.units for _ in range(2)]

    def step(self, token_ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        """One token per row in, next-token probabilities and new states out."""
        self._ensure_step()
        outputs = self._step([tf.constant(token_ids.reshape(-1, 1), tf.int64), *states])
        return np.asarray(outputs[0], np.float64), list(outputs[1:])

    def window_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The probabilities of the token after each window (a ``sequence`` model's last
        position)."""
        probabilities = self._full(tf.constant(windows, tf.int64))
        return np.asarray(model_lib.last_position(probabilities), np.float64)

    def generate(
        self,
        primers: np.ndarray,
        length: int,
        *,
        context: str = "carry",
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``length`` new token ids for each primer row (``primers``:
        ``(samples, sequence_length)``).

        Under a grammar, each row's state reads its primer first, then every drawn token; the last
        tokens are drawn so that the piece ends whole (:meth:`GrammarState.allowed_within`).
        ``progress`` is called with the number of tokens drawn so far after each one.
        """
        if context not in sampling.CONTEXTS:
            raise ValueError(f"context must be one of {sampling.CONTEXTS}")
        primers = np.asarray(primers, np.int64).reshape(len(primers), -1)
        rng = np.random.default_rng(seed)
        out = np.zeros((len(primers), length), np.int64)
        states = sampling.grammar_states(self.grammar, primers)
        vocab = self.grammar.vocab if self.grammar is not None else ()

        def draw(probs: np.ndarray, t: int) -> list[int]:
            drawn = sampling.draw(probs, states, vocab, length - t, temperature, top_k, top_p, rng)
            if progress is not None:
                progress(t + 1)
            return drawn

        if context == "window":
            window = primers[:, -self.sequence_length :].copy()
            for t in range(length):
                probs = self.window_probabilities(window)
                out[:, t] = draw(probs, t)
                window = np.concatenate([window[:, 1:], out[:, t : t + 1]], axis=1)
            return out
        lstm = self.zero_states(len(primers))
        probs = None
        for t in range(primers.shape[1]):
            probs, lstm = self.step(primers[:, t], lstm)
        for t in range(length):
            out[:, t] = draw(probs, t)
            if t + 1 < length:
                probs, lstm = self.step(out[:, t], lstm)
        return out

    def pieces(self, primers: np.ndarray, ids: np.ndarray, vocab: Sequence[str]) -> list[list[str]]:
        """The tokens each row of :meth:`generate` writes
        (:func:`trainer.sampling.piece_tokens`)."""
        return [
            sampling.piece_tokens(self.grammar, vocab, primer, row)
            for primer, row in zip(primers, ids)
        ]
