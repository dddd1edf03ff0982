"""Learned (BPE) vocabularies for REMI: MidiTok's own trainer, and how a learned token is written.

``preprocess --encoding remi --bpe-vocab N`` learns a subword vocabulary of ``N`` tokens (MidiTok's
count: its base vocabulary, :func:`base_vocab_size`, plus the learned ones) with MidiTok's
``tokenizer.train(model="BPE")``, which runs Hugging Face's BPE trainer over the tokens' bytes.
How the pipeline samples the pieces it learns from: :mod:`preprocessing.learn_vocabulary`.

* **Bars are words.** Each piece is handed to the trainer cut before every ``Bar_None``, so no
  merge crosses a bar line (identical bars are counted together, which keeps learning fast). The
  saved tokenizer says ``encode_ids_split: "no"``: as no merge crosses a bar line, encoding a whole
  piece at once gives the same tokens as encoding it bar by bar, and MidiTok's own encoder of a
  score gives exactly this module's tokens.
* **A learned token's string** is its base tokens joined by
  :data:`~preprocessing.encodings.remi_grammar.SEPARATOR` (``Pitch_60+Duration_1.0.4``): readable,
  the same on every run, and enough to decode, transpose and check it without the learned model.
* **The learned model travels in ``tokenizer.json``** (MidiTok's ``save``), and
  :func:`learned_hash` names it; a file whose learned part is damaged is refused
  (:func:`learned_part_problem`).

Deterministic: the same pieces in the same order give the same merges and the same
``tokenizer.json`` bytes (Hugging Face's trainer breaks ties by the pair, not by hash order).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence

from miditok import REMI, TokSequence

from preprocessing.encodings.base import stable_hash
from preprocessing.encodings.remi_grammar import SEPARATOR

BAR = "Bar_None"
LEARNED_KEYS = ("_vocab_base", "_model", "_vocab_base_byte_to_token")
"""The entries of a saved MidiTok tokenizer that hold its learned vocabulary (``to_dict``)."""


def bar_chunks(tokens: Sequence[str]) -> list[list[str]]:
    """The tokens cut before every ``Bar_None``: the words the trainer counts."""
    chunks: list[list[str]] = []
    for token in tokens:
        if token == BAR or not chunks:
            chunks.append([])
        chunks[-1].append(token)
    return chunks


class _Bars:
    """What ``tokenizer.train`` iterates over: per piece, the bytes of each of its bars."""

    def __init__(self, tokenizer: REMI, pieces: Sequence[Sequence[str]]):
        self.tokenizer, self.pieces = tokenizer, pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def __iter__(self) -> Iterator[list[str]]:
        ids = self.tokenizer.vocab
        for tokens in self.pieces:
            yield [
                self.tokenizer._ids_to_bytes([ids[t] for t in chunk], as_one_str=True)
                for chunk in bar_chunks(tokens)
            ]


@contextlib.contextmanager
def _stdout_hidden() -> Iterator[None]:
    """Hugging Face's trainer writes empty progress lines to file descriptor 1 even when it is not
    a terminal; they go to the null device while it runs."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def train(tokenizer: REMI, pieces: Sequence[Sequence[str]], vocab_size: int) -> None:
    """Learn BPE merges into ``tokenizer`` (untrained, ``encode_ids_split="no"``) from ``pieces``
    of base tokens, up to ``vocab_size`` tokens in all: fewer when the pieces run out of pairs."""
    with _stdout_hidden():
        tokenizer.train(vocab_size=vocab_size, model="BPE", iterator=_Bars(tokenizer, pieces))


def token_strings(tokenizer: REMI) -> list[str]:
    """Each learned-vocabulary id's string (id order): its base tokens joined by SEPARATOR."""
    model = tokenizer._model
    expansions = tokenizer._vocab_learned_bytes_to_tokens
    return [SEPARATOR.join(expansions[model.id_to_token(i)]) for i in range(model.get_vocab_size())]


def apply(tokenizer: REMI, strings: Sequence[str], tokens: Sequence[str]) -> list[str]:
    """Base tokens → learned tokens' strings (``strings``: :func:`token_strings`)."""
    if not tokens:
        return []
    sequence = TokSequence(tokens=list(tokens))
    tokenizer.complete_sequence(sequence)
    tokenizer.encode_token_ids(sequence)
    return [strings[i] for i in sequence.ids]


def learned_hash(tokenizer: REMI) -> str:
    """A hash of what the tokenizer learned (its BPE model, merges in order, and the bytes its
    base tokens are written as); "" for an untrained one."""
    if not tokenizer.is_trained:
        return ""
    model = json.loads(tokenizer._model.to_str())["model"]
    return stable_hash({"model": model, "bytes": tokenizer._vocab_base_byte_to_token})


def learned_part_problem(document: Mapping) -> str | None:
    """Why a saved tokenizer's learned part cannot be read (some of its entries missing), or
    None."""
    present = [key for key in LEARNED_KEYS if key in document]
    if present and len(present) < len(LEARNED_KEYS):
        missing = ", ".join(key for key in LEARNED_KEYS if key not in document)
        return f"its learned vocabulary is incomplete (it lacks {missing})"
    return None
