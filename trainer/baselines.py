"""What counting alone predicts: the unigram and bigram baselines beside which the model's
validation accuracy means something. Pure numpy.

Both are counted from the training windows (as stored: never transposed) and scored on the
validation windows, on the same targets the model is scored on: the token after each window (the
``last`` position, full context), and, for the ``sequence`` objective, the token after every
position of each window (``…_every_position``).
"""

from __future__ import annotations

import numpy as np

EVERY_POSITION = "_every_position"
"""The suffix of a figure over every position of the validation windows (``val_accuracy`` is the
last position's)."""


def guesses(train: tuple[np.ndarray, np.ndarray], vocab_size: int) -> tuple[int, np.ndarray]:
    """``(most frequent target, bigram guess per previous token)`` counted from training windows
    ``(inputs [N, L], targets [N])``: the unigram always says the first; the bigram says the most
    frequent token that followed the previous one in training (the unigram's guess for a token
    never seen before a target)."""
    train_x, train_y = train
    most_frequent = int(np.bincount(train_y, minlength=vocab_size).argmax())
    # Sparse bigram counts (a dense vocab x vocab table would not fit large vocabularies).
    pairs, counts = np.unique(
        train_x[:, -1].astype(np.int64) * vocab_size + train_y, return_counts=True
    )
    prev, nxt = pairs // vocab_size, pairs % vocab_size
    order = np.lexsort((-counts, prev))  # by previous token, most frequent follower first
    prev, nxt = prev[order], nxt[order]
    first = np.r_[True, prev[1:] != prev[:-1]]
    guess = np.full(vocab_size, most_frequent, np.int64)
    guess[prev[first]] = nxt[first]
    return most_frequent, guess


def baselines(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    vocab_size: int,
    *,
    every_position: bool = False,
) -> dict[str, float]:
    """Validation next-token accuracy of the unigram and the bigram (:func:`guesses`): at the
    last position of each window, and with ``every_position`` also over every position
    (``…_every_position`` keys). Empty when either split has no window."""
    (train_x, train_y), (val_x, val_y) = train, validation
    if len(val_y) == 0 or len(train_y) == 0:
        return {}
    most_frequent, guess = guesses((train_x, train_y), vocab_size)
    scores = {
        "unigram_val_accuracy": float(np.mean(val_y == most_frequent)),
        "bigram_val_accuracy": float(np.mean(guess[val_x[:, -1]] == val_y)),
    }
    if every_position:
        window = np.concatenate([val_x, val_y[:, None]], axis=1)
        previous, following = window[:, :-1], window[:, 1:]
        scores["unigram_val_accuracy" + EVERY_POSITION] = float(np.mean(following == most_frequent))
        scores["bigram_val_accuracy" + EVERY_POSITION] = float(
            np.mean(guess[previous] == following)
        )
    return scores
