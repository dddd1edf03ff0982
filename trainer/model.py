"""Network builders: the reference notebook's LSTM, and a faster cuDNN-eligible variant.

Both take a window of integer token ids ``[batch, sequence_length]`` (the records stay integer ids)
and return next-token probabilities (float32, softmax): ``[batch, vocab_size]`` for the token after
the window (``--objective last``, the notebook's), or ``[batch, sequence_length, vocab_size]`` for
the token after every position (``--objective sequence``, ``fast`` only: its last LSTM returns its
whole sequence and the head runs at every position; :func:`last_position` reads such a model's last
row). Both are compiled with RMSprop and (sparse) categorical cross-entropy, as the reference; the
trainer's own loop uses :func:`loss_fn` and ``model.optimizer``, ``compile`` only records them for
``model.keras``.

``reference`` reproduces ``create_network`` of the notebook layer for layer (with its sizes as the
defaults: 3 x LSTM(512), Dense 256, dropout 0.3): the ids are scaled to [0, 1] by the vocabulary
size *inside* the model (``Rescaling`` + ``Reshape`` to ``[seq, 1]``, as the notebook's
``network_input / n_vocab``), every LSTM but the last has ``recurrent_dropout=0.3`` (the notebook's
third ``LSTM(512)`` has none), then BatchNorm, Dropout, Dense + ReLU, BatchNorm, Dropout,
Dense(vocab) + softmax. Recurrent dropout makes Keras fall back to the generic (slow) LSTM kernel.

``fast`` keeps depth and width but reads an ``Embedding`` and replaces recurrent dropout by
``Dropout`` between the LSTM layers, so every LSTM keeps the defaults that the fused cuDNN kernel
needs (tanh / sigmoid, no recurrent dropout, no unroll, bias). With a GPU present it computes in
``mixed_float16`` (the softmax output stays float32); on CPU it is float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def _keras():
    """Keras, imported when a network is built: the flag parsers read :data:`MODELS` without
    TensorFlow."""
    import keras

    return keras


OBJECTIVES = ("last", "sequence")
"""``train --objective``: ``last`` predicts the token after each window (the notebook's);
``sequence`` the token after every position of the window, the loss averaged over them."""


def gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def reference(
    sequence_length: int,
    vocab_size: int,
    *,
    units: int = 512,
    num_layers: int = 3,
    dense_units: int = 256,
    dropout: float = 0.3,
    learning_rate: float = 0.001,
    objective: str = "last",
) -> keras.Model:
    """The notebook's network, taking integer ids (scaled by ``vocab_size`` inside the model);
    ``last`` is its only objective."""
    _check_sizes(sequence_length, vocab_size, units, num_layers, dense_units, dropout)
    if objective != "last":
        raise ValueError(
            f"--model reference predicts the token after the window only (--objective last), as "
            f"the notebook's; --objective {objective} needs --model fast"
        )
    keras = _keras()
    layers = keras.layers
    model = keras.Sequential(name="reference")
    model.add(keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids"))
    model.add(layers.Rescaling(1.0 / vocab_size, name="scale_by_vocab"))
    model.add(layers.Reshape((sequence_length, 1), name="as_features"))
    for index in range(num_layers):
        last = index == num_layers - 1
        model.add(
            layers.LSTM(
                units, return_sequences=not last, recurrent_dropout=0.0 if last else dropout
            )
        )
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(dense_units))
    model.add(layers.Activation("relu"))
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(vocab_size))
    model.add(layers.Activation("softmax"))
    _compile(model, learning_rate, mixed=False)
    return model


def fast(
    sequence_length: int,
    vocab_size: int,
    *,
    units: int = 512,
    num_layers: int = 3,
    dense_units: int = 256,
    embedding_dim: int = 64,
    dropout: float = 0.3,
    learning_rate: float = 0.001,
    mixed_precision: bool | None = None,
    objective: str = "last",
) -> keras.Model:
    """Embedding + cuDNN-eligible LSTMs + the reference's head; mixed_float16 when a GPU is
    present. ``objective`` ``sequence``: the head at every position."""
    _check_sizes(sequence_length, vocab_size, units, num_layers, dense_units, dropout)
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {OBJECTIVES}, not {objective!r}")
    if embedding_dim < 1:
        raise ValueError(f"--embedding-dim must be at least 1, not {embedding_dim}")
    mixed = gpu_present() if mixed_precision is None else mixed_precision
    policy = "mixed_float16" if mixed else "float32"
    keras = _keras()
    layers = keras.layers
    model = keras.Sequential(name="fast")
    model.add(keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids"))
    model.add(layers.Embedding(vocab_size, embedding_dim, dtype=policy))
    every_position = objective == "sequence"
    for index in range(num_layers):
        last = index == num_layers - 1
        model.add(layers.LSTM(units, return_sequences=every_position or not last, dtype=policy))
        if not last:
            model.add(layers.Dropout(dropout, dtype=policy))
    model.add(layers.BatchNormalization(dtype=policy))
    model.add(layers.Dropout(dropout, dtype=policy))
    model.add(layers.Dense(dense_units, dtype=policy))
    model.add(layers.Activation("relu", dtype=policy))
    model.add(layers.BatchNormalization(dtype=policy))
    model.add(layers.Dropout(dropout, dtype=policy))
    model.add(layers.Dense(vocab_size, dtype=policy))
    model.add(layers.Activation("softmax", dtype="float32"))
    _compile(model, learning_rate, mixed=mixed)
    return model


BUILDERS = {"fast": fast, "reference": reference}
MODELS: tuple[str, ...] = tuple(BUILDERS)
"""The network names ``--model`` takes (the trainer's flags and the quickstart read them from
here)."""


def build(name: str, sequence_length: int, vocab_size: int, **sizes) -> keras.Model:
    if name == "reference":
        sizes.pop("embedding_dim", None)
        sizes.pop("mixed_precision", None)
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return BUILDERS[name](sequence_length, vocab_size, **sizes)


def every_position(model: keras.Model) -> bool:
    """Whether ``model`` predicts at every position (``--objective sequence``)."""
    return len(model.output_shape) == 3


def last_position(probabilities):
    """The probabilities of the token after the window, whichever the objective: a ``sequence``
    model's last row."""
    return probabilities[:, -1] if len(probabilities.shape) == 3 else probabilities


def is_mixed(model: keras.Model) -> bool:
    return any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers)


def loss_fn(targets, probabilities):
    """Per-example cross-entropy of integer targets (the notebook's one-hot categorical
    cross-entropy)."""
    return _keras().losses.sparse_categorical_crossentropy(targets, probabilities)


def _compile(model: keras.Model, learning_rate: float, mixed: bool) -> None:
    keras = _keras()
    optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate)
    if mixed:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")


def _check_sizes(sequence_length, vocab_size, units, num_layers, dense_units, dropout) -> None:
    for name, value in (
        ("sequence length", sequence_length),
        ("vocabulary size", vocab_size),
        ("--units", units),
        ("--layers", num_layers),
        ("--dense-units", dense_units),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), not {dropout}")
