"""Choosing the next token: temperature, top-k, top-p, a grammar's mask. Pure numpy.

Shared by the command-line generator, ``evaluate`` and the trainer's TensorBoard samples, all of
which run a network through :class:`trainer.composer.Composer`; this module only turns each step's
probabilities into token ids. Everything that depends on what a token means comes from the
encoding's sampling grammar (:mod:`preprocessing.encodings.grammar`), so sampling works for every
encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from preprocessing.encodings.grammar import Grammar, GrammarState

CONTEXTS = ("carry", "window")
"""How a network runs over time while it composes (``--context``): ``carry`` carries the LSTM state
forward, one step per token; ``window`` runs the last window from a zero state for every token, as
the reference does (:class:`trainer.composer.Composer`)."""


# ----------------------------------------------------------------------- the grammar while sampling


def grammar_states(grammar: Grammar | None, primers: np.ndarray) -> list[GrammarState] | None:
    """One grammar state per primer row, each having read its row's tokens; None for no grammar or a
    free one (the reference's): then nothing is masked and a seeded run draws exactly what it drew
    before grammars existed."""
    if grammar is None or grammar.free:
        return None
    return [grammar.start([grammar.vocab[i] for i in row]) for row in np.asarray(primers)]


def draw(
    probabilities: np.ndarray,
    states: list[GrammarState] | None,
    vocab: Sequence[str],
    remaining: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    rng: np.random.Generator,
) -> list[int]:
    """One :func:`sample_next` per row of ``probabilities``, each under its row's grammar state
    (which then reads the drawn token, ``vocab[id]``). ``remaining`` (this token included) lets
    the grammar end the piece whole (:meth:`GrammarState.allowed_within`)."""
    if states is None:
        return [sample_next(p, temperature, top_k, rng, top_p) for p in probabilities]
    drawn = []
    for p, state in zip(probabilities, states):
        token_id = sample_next(p, temperature, top_k, rng, top_p, state.allowed_within(remaining))
        state.push(vocab[token_id])
        drawn.append(token_id)
    return drawn


def piece_tokens(
    grammar: Grammar | None, vocab: Sequence[str], primer: Sequence[int], ids: Sequence[int]
) -> list[str]:
    """The tokens of a composed piece as written and measured: the generated ids' tokens, behind
    the primer's :meth:`Grammar.lead_in` (REMI: a trailing ``Pitch`` whose ``Duration`` was
    generated), and without a last ``Pitch`` left unfinished (only when ``--length`` is too short
    to finish a note; :meth:`GrammarState.allowed_within` ends every longer piece whole). The
    reference: the tokens."""
    tokens = [vocab[i] for i in ids]
    if grammar is None or grammar.free:
        return tokens
    tokens = grammar.lead_in([vocab[i] for i in primer]) + tokens
    return tokens if grammar.start(tokens).finished else tokens[:-1]


def _allowed_mask(allowed: np.ndarray | None, size: int) -> np.ndarray | None:
    if allowed is None:
        return None
    mask = np.asarray(allowed, dtype=bool).reshape(-1)
    if mask.size != size:
        raise ValueError(
            f"the mask of allowed ids has {mask.size} entries for {size} probabilities"
        )
    if not mask.any():
        raise ValueError("the mask of allowed ids allows nothing")
    return mask


def distribution(
    probabilities: np.ndarray,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """The distribution :func:`sample_next` draws from: ``probabilities`` reshaped by each setting
    in turn.

    In the order Hugging Face's samplers apply them: ids outside ``allowed`` (a boolean mask, e.g. a
    grammar's) get probability 0 exactly (``-inf`` logits, so no floor gives them a chance); then
    the temperature (``p ** (1 / temperature)``, renormalised); then ``top_k`` keeps the ``k``
    likeliest ids (ties at the cut stay); then ``top_p`` (nucleus sampling, Holtzman et al. 2020)
    keeps the smallest set of likeliest ids whose probability reaches ``top_p``, at least one id.
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


def sample_next(
    probabilities: np.ndarray,
    temperature: float,
    top_k: int | None,
    rng: np.random.Generator,
    top_p: float | None = None,
    allowed: np.ndarray | None = None,
) -> int:
    """The next token id from a probability vector.

    ``temperature`` 0 is the argmax among the allowed ids (the reference's decoding). Otherwise one
    id is drawn with ``rng`` (so a seed makes a run repeatable) from :func:`distribution`.
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if temperature == 0:
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        mask = _allowed_mask(allowed, p.size)
        return int(np.argmax(p if mask is None else np.where(mask, p, -np.inf)))
    weights = distribution(probabilities, temperature, top_k, top_p, allowed)
    return int(rng.choice(weights.size, p=weights))
