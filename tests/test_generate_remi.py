"""Generation under REMI: grammar-masked sampling on untrained networks, the model folder's
tokenizer, a primer MIDI through the encoding, and the reference's draws left as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import melody_midi
from miditok import TokSequence
from symusic import Score

from preprocessing import reader, records, windowing
from preprocessing.encodings import loader
from preprocessing.encodings.reference import ReferenceEncoding
from preprocessing.encodings.remi import TOKENIZER_FILE, RemiEncoding
from trainer import export, generate, sampling
from trainer import model as model_lib
from trainer.composer import Composer

SEQ = 16
REMI = RemiEncoding()
VOCAB = windowing.vocabulary(t for t in REMI.tokenizer.vocab if t != "PAD_None")
"""MidiTok's whole REMI vocabulary of this configuration (153 tokens), sorted as the pipeline
sorts."""
INDEX = {token: i for i, token in enumerate(VOCAB)}


def primers_ending_in(
    tokens: list[str], kinds=("Pitch", "Position", "Duration", "Bar")
) -> np.ndarray:
    """A window of ``SEQ`` tokens ending in each of ``kinds``: where a piece continues from
    matters."""
    rows = []
    for kind in kinds:
        end = next(i for i in range(SEQ + 5, len(tokens)) if tokens[i - 1].startswith(kind))
        rows.append([INDEX[t] for t in tokens[end - SEQ : end]])
    return np.array(rows)


def untrained(seed: int = 0):
    tf.keras.utils.set_random_seed(seed)
    return model_lib.build(
        "fast",
        SEQ,
        len(VOCAB),
        units=16,
        num_layers=1,
        dense_units=16,
        dropout=0.0,
        embedding_dim=8,
    )


def errors(tokens: list[str]) -> float:
    return REMI.tokenizer.tokens_errors(TokSequence(tokens=list(tokens)))


def pitches(tokens: list[str]) -> int:
    return sum(token.startswith("Pitch_") for token in tokens)


@pytest.mark.parametrize("context, length", [("carry", 120), ("window", 50)])
def test_an_untrained_network_under_the_grammar_writes_pieces_that_decode_whole(context, length):
    primers = primers_ending_in(REMI.encode(melody_midi()))
    composer = Composer(untrained(), SEQ, REMI.grammar(VOCAB))
    for temperature in (1.0, 0.0):
        ids = composer.generate(primers, length, context=context, temperature=temperature, seed=3)
        pieces = composer.pieces(primers, ids, VOCAB)
        for primer, row, piece in zip(primers, ids, pieces):
            lead = piece[: len(piece) - len(row)]
            assert lead == ([VOCAB[primer[-1]]] if VOCAB[primer[-1]].startswith("Pitch_") else [])
            assert piece[len(lead) :] == [VOCAB[i] for i in row]  # nothing generated is left out
            assert errors(piece) == 0
            events = REMI.note_events(piece)
            assert len(events) == pitches(piece) > 5  # every Pitch is a note: no token dropped
            assert REMI.encode(REMI.decode(piece))  # the written MIDI reads back
        if temperature:
            assert len({e.duration for piece in pieces for e in REMI.note_events(piece)}) > 1
    # Without the grammar the same network writes what MidiTok cannot read in full.
    free = Composer(untrained(), SEQ).generate(primers, length, context=context, seed=3)
    assert any(errors([VOCAB[i] for i in row]) > 0 for row in free)


def test_the_mask_holds_against_a_network_that_prefers_illegal_tokens():
    """The output layer's bias makes Pitch_60 the likeliest token by far, after every token:
    repeated at one position, after a Pitch, before any Position. Greedy and sampled draws must
    still be legal."""
    model = untrained(1)
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)][-1]
    kernel, bias = dense.get_weights()
    bias[INDEX["Pitch_60"]] += 30.0
    bias[INDEX["Position_0"]] += 20.0  # and a Position that goes back in time
    dense.set_weights([kernel, bias])
    primers = primers_ending_in(REMI.encode(melody_midi(1)))
    composer = Composer(model, SEQ, REMI.grammar(VOCAB))
    probabilities = composer.window_probabilities(primers)
    assert probabilities[:, INDEX["Pitch_60"]].min() > 0.99
    for temperature in (0.0, 1.0):
        ids = composer.generate(primers, 60, temperature=temperature, seed=1)
        for piece in composer.pieces(primers, ids, VOCAB):
            assert errors(piece) == 0 and len(REMI.note_events(piece)) == pitches(piece)
        assert (ids == INDEX["Pitch_60"]).any()  # it is drawn wherever it is legal
    # Step by step: every draw lies inside the mask its state gave.
    grammar = REMI.grammar(VOCAB)
    state, rng = grammar.start([VOCAB[i] for i in primers[0]]), np.random.default_rng(0)
    for step in range(200):
        allowed = state.allowed_within(200 - step)
        drawn = sampling.draw(probabilities[:1], [state], VOCAB, 200 - step, 1.0, None, None, rng)[
            0
        ]
        assert allowed[drawn]
    assert state.finished


def test_the_reference_grammar_masks_nothing_so_seeded_draws_stay_as_they_were():
    from test_generate import SEQ as REF_SEQ
    from test_generate import VOCAB as REF_VOCAB
    from test_generate import tiny

    model = tiny("fast")
    primer = np.random.default_rng(3).integers(0, len(REF_VOCAB), size=(2, REF_SEQ))
    free = Composer(model, REF_SEQ, loader.get("reference").grammar(REF_VOCAB))
    plain = Composer(model, REF_SEQ)
    assert sampling.grammar_states(free.grammar, primer) is None
    for context in ("carry", "window"):
        a = free.generate(primer, 30, context=context, temperature=1.2, top_k=6, seed=5)
        assert (
            a.tolist()
            == plain.generate(
                primer, 30, context=context, temperature=1.2, top_k=6, seed=5
            ).tolist()
        )
    # the draws are sample_next's own, in order, from one generator
    rng, states = np.random.default_rng(5), plain.zero_states(2)
    for t in range(REF_SEQ):
        probs, states = plain.step(primer[:, t], states)
    manual = []
    for _ in range(5):
        manual.append([sampling.sample_next(p, 1.2, 6, rng) for p in probs])
        probs, states = plain.step(np.array(manual[-1]), states)
    assert free.generate(primer, 5, temperature=1.2, top_k=6, seed=5).T.tolist() == manual
    ids = free.generate(primer, 7, seed=1)
    assert free.pieces(primer, ids, REF_VOCAB) == [[REF_VOCAB[i] for i in row] for row in ids]


def test_the_grammar_ends_a_piece_whole_and_leads_in_a_trailing_pitch():
    grammar = REMI.grammar(VOCAB)
    after_duration = grammar.start(["Bar_None", "Position_0", "Pitch_60", "Duration_1.0.4"])
    for remaining, banned in ((1, ("Position", "Pitch")), (2, ("Position",)), (3, ())):
        kinds = {
            VOCAB[i].split("_")[0] for i in np.flatnonzero(after_duration.allowed_within(remaining))
        }
        assert kinds == {"Pitch", "Position", "Bar", "Rest"} - set(banned), remaining
    # after a Position only a Pitch may come: a last token must be one, and stays unfinished
    after_position = grammar.start(["Bar_None", "Position_4"])
    assert (after_position.allowed_within(1) == after_position.allowed()).all()
    assert (
        grammar.lead_in(["Position_4", "Pitch_60"]) == ["Pitch_60"]
        and grammar.lead_in(["Bar_None"]) == []
    )
    assert sampling.piece_tokens(grammar, VOCAB, [INDEX["Position_4"]], [INDEX["Pitch_62"]]) == []
    assert sampling.piece_tokens(
        grammar, VOCAB, [INDEX["Pitch_60"]], [INDEX["Duration_1.0.4"]]
    ) == ["Pitch_60", "Duration_1.0.4"]


# --------------------------------------------------------------------------- a REMI model folder


@pytest.fixture(scope="module")
def remi_model_dir(tmp_path_factory) -> Path:
    """A model/ folder as the trainer exports it from REMI data: tokenizer.json beside
    vocab.json."""
    out = tmp_path_factory.mktemp("remi_model")
    untrained(2).save(out / export.MODEL_FILE)
    (out / records.VOCAB_FILE).write_text(records.vocab_to_json(VOCAB))
    manifest = records.Manifest(
        sequence_length=SEQ,
        stride=1,
        vocab_size=len(VOCAB),
        vocab_hash=records.vocab_hash(VOCAB),
        parts="all",
        compression="none",
        validation_fraction=0.1,
        counts={},
        train_shards=(),
        validation_shards=(),
        encoding=REMI.token_format,
        encoding_config_hash=REMI.config_hash,
        encoding_versions=REMI.versions,
    )
    (out / records.MANIFEST_FILE).write_text(records.manifest_to_json(manifest))
    (out / TOKENIZER_FILE).write_bytes(REMI.saved_files()[TOKENIZER_FILE])
    primers = primers_ending_in(REMI.encode(melody_midi(4))).tolist()
    (out / export.PRIMERS_FILE).write_text(json.dumps({"split": "validation", "windows": primers}))
    assert export.model_dir_files(manifest) == (
        records.VOCAB_FILE,
        TOKENIZER_FILE,
        records.MANIFEST_FILE,
    )
    return out


def test_generate_decodes_with_the_saved_tokenizer_and_reads_a_primer_through_it(
    remi_model_dir, tmp_path, capsys
):
    primer = tmp_path / "primer.mid"
    primer.write_bytes(melody_midi(5))
    out = tmp_path / "piece.mid"
    assert (
        generate.main(
            [
                "--model-dir",
                str(remi_model_dir),
                "--output",
                str(out),
                "--length",
                "80",
                "--seed",
                "2",
                "--primer",
                str(primer),
                "--wav",
            ]
        )
        == 0
    )
    tokens = json.loads((tmp_path / "piece.json").read_text())["tokens_text"]
    primer_tokens = REMI.encode(primer.read_bytes())
    assert len(tokens) == 80 + (primer_tokens[-1].startswith("Pitch_")) and errors(tokens) == 0
    # the file is the tokens' decoding
    assert REMI.encode(out.read_bytes()) == REMI.encode(REMI.decode(tokens))
    notes = Score.from_midi(out.read_bytes()).tracks[0].notes
    assert len(notes) == pitches(tokens) and len({n.duration for n in notes}) > 1
    assert f"wrote {out}" in capsys.readouterr().out and (tmp_path / "piece.png").exists()
    assert (tmp_path / "piece.wav").stat().st_size > 1000


def test_a_model_folder_with_another_tokenizer_is_refused_in_one_line(
    remi_model_dir, tmp_path, capsys
):
    copy = tmp_path / "model"
    shutil.copytree(remi_model_dir, copy)
    document = json.loads((copy / TOKENIZER_FILE).read_text())
    document["config"]["beat_res"] = {"0_4": 8, "4_12": 4}
    (copy / TOKENIZER_FILE).write_text(json.dumps(document))
    code = generate.main(["--model-dir", str(copy), "--output", str(tmp_path / "x.mid")])
    line = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in line and line.startswith("lstm-composer generate: error: ")
    assert "configuration hash" in line and "copy it from the data folder" in line
    assert not (tmp_path / "x.mid").exists()
    (copy / TOKENIZER_FILE).unlink()
    assert generate.main(["--model-dir", str(copy), "--output", str(tmp_path / "x.mid")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and f"{TOKENIZER_FILE} not found" in line


def test_encoding_of_maps_a_manifest_to_its_saved_encoding(remi_model_dir):
    manifest, _ = reader.read_output(str(remi_model_dir), shards=False)
    loaded = reader.encoding_of(str(remi_model_dir), manifest)
    assert isinstance(loaded, RemiEncoding) and loaded.config_hash == REMI.config_hash
    reference = records.Manifest(**{**manifest.__dict__, "encoding": records.ENCODING})
    built = reader.encoding_of("/nowhere", reference)  # nothing read: the reference saves no file
    assert isinstance(built, ReferenceEncoding) and built.name == "reference"
