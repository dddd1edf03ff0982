"""REMI with a learned (BPE) vocabulary, without the pipeline: MidiTok's trainer on the embedded
dataset, the learned tokens' strings, decoding and transposing them, the saved tokenizer, the
sampling grammar over them, and the bounded sample the pipeline learns from."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import walk_grammar
from miditok import TokSequence

from preprocessing import sample_data
from preprocessing.encodings import loader, remi_bpe
from preprocessing.encodings.registry import EncodingError
from preprocessing.encodings.remi import RemiEncoding, base_vocab_size
from preprocessing.encodings.remi_grammar import SEPARATOR, base_tokens
from preprocessing.learn_vocabulary import SampleFn
from preprocessing.parse_files import Piece
from trainer import sampling

ROOT = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 500
BASE = RemiEncoding()


@pytest.fixture(scope="module")
def pieces() -> dict[str, list[str]]:
    """The embedded dataset's base tokens."""
    directory = Path(sample_data.ensure_dataset())
    return {path.name: BASE.encode(path.read_bytes()) for path in sorted(directory.glob("*.mid"))}


@pytest.fixture(scope="module")
def learned(pieces) -> RemiEncoding:
    """A vocabulary learned from every other piece (the rest stays unseen)."""
    return RemiEncoding.learn(list(pieces.values())[::2], VOCAB_SIZE)


@pytest.fixture(scope="module")
def written(pieces, learned) -> dict[str, list[str]]:
    return {name: learned.apply_learned(tokens) for name, tokens in pieces.items()}


@pytest.fixture(scope="module")
def vocab(written) -> list[str]:
    """As the pipeline makes it: the learned tokens used, and the base tokens they stand for."""
    used = {token for tokens in written.values() for token in tokens}
    return sorted(used | set(base_tokens(used)))


def errors(tokens: list[str]) -> float:
    """MidiTok's own count of grammar errors, on the base tokens that ``tokens`` stand for."""
    return BASE.tokenizer.tokens_errors(TokSequence(tokens=base_tokens(tokens)))


# --------------------------------------------------------------------------- the learned tokens


def test_the_base_vocabulary_and_what_a_learned_token_is_written_as(learned, written, pieces):
    assert base_vocab_size() == len(BASE.tokenizer.vocab) == 154
    assert not any(SEPARATOR in token for token in BASE.tokenizer.vocab)
    assert learned.learned_size == VOCAB_SIZE and BASE.learned_size == 0
    strings = remi_bpe.token_strings(learned.tokenizer)
    assert strings[: len(BASE.tokenizer.vocab)] == sorted(
        BASE.tokenizer.vocab, key=BASE.tokenizer.vocab.get
    )
    assert len(set(strings)) == VOCAB_SIZE  # one string per learned token
    learned_ones = [token for token in strings if SEPARATOR in token]
    assert "Bar_None+Position_0" in learned_ones
    assert all(set(token.split(SEPARATOR)) <= set(BASE.tokenizer.vocab) for token in learned_ones)
    # no learned token crosses a bar line: a Bar only ever opens one
    assert all(BASE_BAR not in token.split(SEPARATOR)[1:] for token in learned_ones)
    base_count = sum(map(len, pieces.values()))
    assert sum(map(len, written.values())) < 0.65 * base_count


BASE_BAR = remi_bpe.BAR


def test_learned_tokens_decode_as_the_base_tokens_they_stand_for(learned, written, pieces):
    for name, tokens in list(written.items())[::3]:
        assert base_tokens(tokens) == pieces[name]
        assert learned.decode(tokens) == BASE.decode(pieces[name]), name
        assert learned.note_events(tokens) == BASE.note_events(pieces[name])
        assert BASE.note_events(tokens) == BASE.note_events(pieces[name])  # any REMI reads them
        assert learned.encode(learned.decode(tokens)) == tokens, name


def test_a_piece_is_written_bar_by_bar(learned, pieces):
    """Training saw bars as words, so encoding a whole piece is encoding its bars one by one."""
    for tokens in list(pieces.values())[1::9]:
        by_bar = [t for chunk in remi_bpe.bar_chunks(tokens) for t in learned.apply_learned(chunk)]
        assert learned.apply_learned(tokens) == by_bar


def test_learning_is_deterministic_across_processes(pieces, learned, tmp_path):
    """Another process (another hash seed) learns the same tokenizer.json, byte for byte."""
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(list(pieces.values())[::2]))
    code = (
        "import json, sys; from preprocessing.encodings.remi import RemiEncoding; "
        f"e = RemiEncoding.learn(json.load(open({str(sample)!r})), {VOCAB_SIZE}); "
        "sys.stdout.buffer.write(e.saved_files()['tokenizer.json'])"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=300, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == learned.saved_files()["tokenizer.json"]


def test_the_saved_tokenizer_keeps_the_learned_vocabulary(learned, written):
    saved = learned.saved_files()
    back = loader.load("remi", saved.__getitem__, learned.config_hash)
    assert back.learned_hash == learned.learned_hash and back.saved_files() == saved
    assert back.config_hash != BASE.config_hash and learned.learned_hash and not BASE.learned_hash
    tokens = next(iter(written.values()))
    assert back.apply_learned(base_tokens(tokens)) == tokens
    document = json.loads(saved["tokenizer.json"])
    del document["_model"]
    damaged = {"tokenizer.json": json.dumps(document).encode()}
    with pytest.raises(EncodingError, match=r"tokenizer.json: .*incomplete \(it lacks _model\)"):
        loader.load("remi", damaged.__getitem__)


def test_a_learned_token_moves_each_of_its_pitches():
    assert BASE.transpose_token("Pitch_60+Duration_1.0.4+Pitch_64", 2) == (
        "Pitch_62+Duration_1.0.4+Pitch_66"
    )
    assert BASE.transpose_token("Bar_None+Position_0", 5) == "Bar_None+Position_0"
    assert BASE.transpose_token("Pitch_60+Duration_1.0.4+Pitch_107", 2) is None


# --------------------------------------------------------------------------- the grammar


def test_every_written_piece_is_allowed_by_the_grammar(learned, written, vocab):
    for name, state in walk_grammar(learned.grammar(vocab), vocab, written).items():
        assert state.finished, name


def test_a_learned_token_is_allowed_exactly_when_its_base_tokens_are_in_turn(
    learned, written, vocab
):
    """Against the base grammar: push each base token through it from the same state."""
    grammar = learned.grammar(vocab)
    base_vocab = sorted(t for t in BASE.tokenizer.vocab if t != "PAD_None")
    base_grammar, base_index = BASE.grammar(base_vocab), {t: i for i, t in enumerate(base_vocab)}
    learned_ids = [i for i, token in enumerate(vocab) if SEPARATOR in token]
    rng, checked = random.Random(0), 0
    for tokens in list(written.values())[::10]:
        for cut in rng.sample(range(len(tokens)), 6):
            mask = grammar.start(tokens[:cut]).allowed()
            for i in learned_ids:
                state, ok = base_grammar.start(base_tokens(tokens[:cut])), True
                for part in vocab[i].split(SEPARATOR):
                    ok = ok and bool(state.allowed()[base_index[part]])
                    state.push(part)
                assert mask[i] == ok, (tokens[cut - 3 : cut], vocab[i])
                checked += ok
    assert checked > 100


def test_the_same_holds_for_made_up_learned_tokens_rests_and_bars_included():
    """Learned tokens the dataset does not give (a ``Position`` after a ``Rest``, positions going
    back, a pitch twice, successions MidiTok never writes), from states the draws reach."""
    base_vocab = sorted(t for t in BASE.tokenizer.vocab if t != "PAD_None")
    base_grammar, base_index = BASE.grammar(base_vocab), {t: i for i, t in enumerate(base_vocab)}
    rng = np.random.default_rng(1)

    def walk(state, length: int) -> list[str]:
        out = []
        for _ in range(length):
            out.append(base_vocab[int(rng.choice(np.flatnonzero(state.allowed())))])
            state.push(out[-1])
        return out

    made_up = {SEPARATOR.join(walk(base_grammar.start(walk(base_grammar.start(), 9)), 3))}
    while len(made_up) < 300:
        prefix = walk(base_grammar.start(), int(rng.integers(0, 12)))
        made_up.add(SEPARATOR.join(walk(base_grammar.start(prefix), int(rng.integers(2, 5)))))
    rests = [t for t in base_vocab if t.startswith("Rest_")]
    made_up |= {f"{rest}+Position_{p}+Pitch_60" for rest in rests[:4] for p in (0, 3, 8)}
    made_up |= {SEPARATOR.join(rng.choice(base_vocab, size=3)) for _ in range(100)}
    vocab = sorted(set(base_vocab) | made_up)
    grammar, learned_ids = BASE.grammar(vocab), [vocab.index(t) for t in sorted(made_up)]
    assert grammar.after_rest.sum() >= 10 and (~grammar.coherent).sum() >= 50
    allowed_seen = 0
    for _ in range(60):
        prefix = walk(base_grammar.start(), int(rng.integers(0, 40)))
        mask = grammar.start(prefix).allowed()
        for i in learned_ids:
            state, ok = base_grammar.start(prefix), True
            for part in vocab[i].split(SEPARATOR):
                ok = ok and bool(state.allowed()[base_index[part]])
                state.push(part)
            assert mask[i] == ok, (prefix[-4:], vocab[i])
            allowed_seen += ok
    assert allowed_seen > 200


@pytest.mark.parametrize("seed", range(3))
def test_uniform_draws_under_the_grammar_decode_with_no_error(learned, vocab, seed):
    """Drawn as generation draws (``sampling.draw``, the end drawn whole), from a uniform
    distribution over the allowed tokens: MidiTok finds no error and drops no note."""
    grammar, rng, length = learned.grammar(vocab), np.random.default_rng(seed), 400
    states, uniform = [grammar.start()], np.full((1, len(vocab)), 1.0 / len(vocab))
    drawn = [
        sampling.draw(uniform, states, vocab, length - t, 1.0, None, None, rng)[0]
        for t in range(length)
    ]
    piece = sampling.piece_tokens(grammar, vocab, [], drawn)
    assert piece == [vocab[i] for i in drawn] and errors(piece) == 0
    assert sum(SEPARATOR in token for token in piece) > length / 3
    base = base_tokens(piece)
    assert len(learned.note_events(piece)) == sum(t.startswith("Pitch_") for t in base) > 50
    unmasked = [vocab[i] for i in rng.integers(0, len(vocab), size=length)]
    assert errors(unmasked) > 0  # the test could fail


def test_a_primer_ending_in_a_learned_pitch_leads_in_with_that_pitch(learned, vocab):
    grammar = learned.grammar(vocab)
    ending = next(t for t in vocab if SEPARATOR in t and t.split(SEPARATOR)[-1][:6] == "Pitch_")
    assert grammar.lead_in(["Bar_None", ending]) == [ending.split(SEPARATOR)[-1]]
    assert grammar.lead_in(["Bar_None+Position_0"]) == []
    after = grammar.start(["Bar_None", ending])
    assert {vocab[i].split("_")[0] for i in np.flatnonzero(after.allowed())} == {"Duration"}


# --------------------------------------------------------------------------- the sample


def piece(key: str, length: int) -> Piece:
    return Piece(path=f"/in/{key}", key=key, tokens=[f"t{len(key)}"] * length)


def test_the_sample_is_bounded_and_the_same_in_any_order():
    fn = SampleFn(budget=100)
    items = [piece(f"p{i}.mid", 15 + i) for i in range(20)]

    def combine(order: list[Piece], groups: int) -> list[tuple[str, ...]]:
        accumulators = [fn.create_accumulator() for _ in range(groups)]
        for i, item in enumerate(order):
            accumulators[i % groups] = fn.add_input(accumulators[i % groups], item)
            assert accumulators[i % groups].total < 100 + 40  # the budget and one piece, at most
        return fn.extract_output(fn.merge_accumulators(accumulators))

    expected = combine(items, 1)
    assert sum(map(len, expected)) == 100  # the last piece is cut at the budget
    for seed in range(5):
        shuffled = random.Random(seed).sample(items, len(items))
        assert combine(shuffled, 1 + seed % 3) == expected
    smallest = sorted(items, key=lambda p: remi_bpe_digest(p.key))
    assert [len(t) for t in expected[:-1]] == [len(p.tokens) for p in smallest[: len(expected) - 1]]
    assert fn.extract_output(fn.create_accumulator()) == []


def remi_bpe_digest(key: str) -> int:
    from preprocessing import windowing

    return windowing.key_digest(key)


def test_a_primer_keeps_every_note_when_the_model_lacks_a_learned_token(learned, pieces, capsys):
    """``generate --primer``: a learned token the model's vocabulary does not hold is written as
    its base tokens, not skipped (a skipped learned token drops its notes)."""
    from trainer.compositions import primer_from_midi

    name, tokens = next((n, t) for n, t in pieces.items() if len(t) > 200)
    data = (Path(sample_data.ensure_dataset()) / name).read_bytes()
    written = learned.encode(data)
    assert any(SEPARATOR in token for token in written)  # the primer is read in learned tokens
    base_only = sorted(set(BASE.tokenizer.vocab))  # a vocabulary without any learned token
    ids = primer_from_midi(data, base_only, 64, "all", "primer.mid", learned)
    assert [base_only[i] for i in ids] == tokens[-64:]
    assert "skipped" not in capsys.readouterr().err
    # a vocabulary that lacks a base token too: only the tokens it cannot spell are skipped
    without = [token for token in base_only if token != tokens[-1]]
    primer_from_midi(data, without, 8, "all", "primer.mid", learned)
    assert "skipped" in capsys.readouterr().err
