"""trainer.model: the reference network is the notebook's, the fast one is cuDNN-eligible."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from trainer import model as model_lib

NOTEBOOK_STACK = [
    "LSTM",
    "LSTM",
    "LSTM",
    "BatchNormalization",
    "Dropout",
    "Dense",
    "Activation",
    "BatchNormalization",
    "Dropout",
    "Dense",
    "Activation",
]


def notebook_create_network(sequence_length: int, n_vocab: int) -> keras.Model:
    """The notebook's ``create_network``, verbatim but for the Keras 3 ``Input`` spelling."""
    model = keras.Sequential()
    model.add(keras.Input(shape=(sequence_length, 1)))
    model.add(layers.LSTM(512, recurrent_dropout=0.3, return_sequences=True))
    model.add(layers.LSTM(512, return_sequences=True, recurrent_dropout=0.3))
    model.add(layers.LSTM(512))
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(0.3))
    model.add(layers.Dense(256))
    model.add(layers.Activation("relu"))
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(0.3))
    model.add(layers.Dense(n_vocab))
    model.add(layers.Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop")
    return model


def expected_reference_params(vocab: int, units: int = 512, dense: int = 256) -> int:
    lstm_first = 4 * (units * (1 + units) + units)
    lstm_next = 4 * (units * (units + units) + units)
    return (
        lstm_first
        + 2 * lstm_next
        + 4 * units
        + (units * dense + dense)
        + 4 * dense
        + (dense * vocab + vocab)
    )


def test_reference_is_the_notebook_network():
    vocab, seq = 358, 100  # the notebook's sequence length; a vocabulary of its size
    ours = model_lib.reference(seq, vocab)
    theirs = notebook_create_network(seq, vocab)
    names = [type(layer).__name__ for layer in ours.layers]
    assert names == ["Rescaling", "Reshape"] + NOTEBOOK_STACK
    assert (
        ours.count_params()
        == theirs.count_params()
        == expected_reference_params(vocab)
        == 5_477_478
    )
    for mine, notebook in zip(ours.layers[2:], theirs.layers):
        config, other = mine.get_config(), notebook.get_config()
        for key in ("units", "recurrent_dropout", "return_sequences", "activation", "rate"):
            assert config.get(key) == other.get(key), (type(mine).__name__, key)
        assert [w.shape for w in mine.weights] == [w.shape for w in notebook.weights]
    assert isinstance(ours.optimizer, keras.optimizers.RMSprop)
    assert ours.output_shape == (None, vocab)


def test_reference_scales_ids_by_the_vocabulary_inside_the_model():
    model = model_lib.reference(4, 10, units=8, num_layers=2, dense_units=8)
    scaled = keras.Sequential(model.layers[:2])(np.array([[0, 5, 9, 2]], dtype=np.int64))
    assert np.allclose(np.asarray(scaled)[0, :, 0], [0.0, 0.5, 0.9, 0.2])


def test_reference_sizes_are_flags():
    model = model_lib.reference(8, 30, units=16, num_layers=2, dense_units=12, dropout=0.1)
    lstms = [layer for layer in model.layers if isinstance(layer, layers.LSTM)]
    assert [layer.units for layer in lstms] == [16, 16]
    assert [layer.recurrent_dropout for layer in lstms] == [0.1, 0.0]
    assert model.count_params() == (
        4 * (16 * 17 + 16) + 4 * (16 * 32 + 16) + 4 * 16 + (16 * 12 + 12) + 4 * 12 + (12 * 30 + 30)
    )


def test_fast_is_cudnn_eligible_and_float32_on_cpu():
    # Keras' own eligibility rule for the fused kernel (its cudnn_ok adds "and a GPU is present").
    from keras.src.backend.tensorflow.rnn import _do_lstm_arguments_support_cudnn as cudnn_args_ok

    model = model_lib.fast(8, 30, units=16, num_layers=3, embedding_dim=8)
    assert isinstance(model.layers[0], layers.Embedding)
    lstms = [layer for layer in model.layers if isinstance(layer, layers.LSTM)]
    assert len(lstms) == 3 and all(layer.units == 16 for layer in lstms)
    for lstm in lstms:
        assert lstm.recurrent_dropout == 0 and lstm.dropout == 0 and lstm.use_cudnn == "auto"
        assert cudnn_args_ok(
            lstm.cell.activation, lstm.cell.recurrent_activation, lstm.unroll, lstm.cell.use_bias
        )
    # dropout between the LSTM layers instead of recurrent dropout
    names = [type(layer).__name__ for layer in model.layers]
    assert names[:6] == ["Embedding", "LSTM", "Dropout", "LSTM", "Dropout", "LSTM"]
    assert not model_lib.gpu_present() and not model_lib.is_mixed(model)
    out = model(np.zeros((2, 8), np.int64))
    assert out.shape == (2, 30) and keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.allclose(np.asarray(out).sum(axis=1), 1.0, atol=1e-5)


def test_reference_is_not_cudnn_eligible():
    model = model_lib.reference(8, 30, units=16, num_layers=3)
    assert [
        layer.recurrent_dropout for layer in model.layers if isinstance(layer, layers.LSTM)
    ] == [0.3, 0.3, 0.0]


def test_fast_mixed_precision_keeps_float32_probabilities():
    model = model_lib.fast(8, 30, units=16, num_layers=2, embedding_dim=8, mixed_precision=True)
    assert model_lib.is_mixed(model)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.backend.standardize_dtype(model(np.zeros((2, 8), np.int64)).dtype) == "float32"


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="--units must be at least 1"):
        model_lib.build("fast", 8, 10, units=0)
    with pytest.raises(ValueError, match="unknown model"):
        model_lib.build("huge", 8, 10)
