"""Generation: the single-step copy, the reference's window loop, sampling, and what gets
written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import records
from preprocessing.encodings import loader, reference
from trainer import (
    audio,
    export,
    generate,
    generate_flags,
    plots,
    repeats,
    sampling,
    summary,
    tensorboard_samples,
)
from trainer import model as model_lib
from trainer.composer import Composer

VOCAB = ["0.4.7", "2.5.9", "7.11.2", "A3", "B3", "C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
SEQ = 8
REF = loader.get("reference")


def tiny(name: str, seed: int = 0):
    # Seeded here: the weights must not depend on which tests ran before in this process (a training
    # run or a sampler leaves Keras' global generator anywhere).
    tf.keras.utils.set_random_seed(seed)
    extra = {"embedding_dim": 4} if name == "fast" else {}
    model = model_lib.build(
        name, SEQ, len(VOCAB), units=16, num_layers=2, dense_units=8, dropout=0.3, **extra
    )
    # Give batch norm non-trivial statistics so a copy that skipped them could not match.
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(np.linspace(-0.2, 0.2, mean.shape[0]).astype("float32"))
            var.assign(np.linspace(0.5, 1.5, var.shape[0]).astype("float32"))
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model/ folder as the trainer exports it: model.keras, vocab.json, manifest.json,
    primers.json."""
    out = tmp_path_factory.mktemp("model")
    tiny("fast").save(out / "model.keras")
    (out / "vocab.json").write_text(records.vocab_to_json(VOCAB))
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
    )
    (out / "manifest.json").write_text(records.manifest_to_json(manifest))
    rng = np.random.default_rng(0)
    primers = rng.integers(0, len(VOCAB), size=(5, SEQ)).tolist()
    (out / "primers.json").write_text(json.dumps({"split": "validation", "windows": primers}))
    return out


@pytest.mark.parametrize("name", model_lib.MODELS)
def test_single_step_copy_gives_the_full_models_distribution(name):
    model = tiny(name)
    windows = np.random.default_rng(1).integers(0, len(VOCAB), size=(4, SEQ))
    full = model(windows, training=False).numpy()
    composer = Composer(model, SEQ)
    states = composer.zero_states(len(windows))
    for t in range(SEQ):
        probs, states = composer.step(windows[:, t], states)
    np.testing.assert_allclose(probs, full, atol=1e-5)
    # and the states are really carried: a different history gives a different distribution
    other, _ = composer.step(windows[:, -1], composer.zero_states(len(windows)))
    assert np.abs(other - full).max() > 1e-4


def test_single_step_copy_follows_weight_updates():
    """The training loop's sampler copies new weights into the model: the step copy must follow."""
    model, other = tiny("fast"), tiny("fast", seed=1)
    composer = Composer(model, SEQ)
    windows = np.random.default_rng(4).integers(0, len(VOCAB), size=(2, SEQ))
    composer.generate(windows, 1, temperature=0.0)  # builds the step copy with the first weights
    model.set_weights(other.get_weights())
    composer.sync_weights()
    states = composer.zero_states(2)
    for t in range(SEQ):
        probs, states = composer.step(windows[:, t], states)
    np.testing.assert_allclose(probs, other(windows, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", model_lib.MODELS)
def test_window_context_with_argmax_is_the_reference_loop(name):
    model = tiny(name)
    primer = np.random.default_rng(2).integers(0, len(VOCAB), size=SEQ)
    # The reference's generate loop, as written in its predict script.
    pattern, expected = list(primer), []
    for _ in range(25):
        prediction = model.predict(np.reshape(pattern, (1, len(pattern))), verbose=0)
        index = int(np.argmax(prediction))
        expected.append(index)
        pattern.append(index)
        pattern = pattern[1 : len(pattern)]
    got = Composer(model, SEQ).generate(primer[None], 25, context="window", temperature=0.0)
    assert got[0].tolist() == expected


def test_temperature_zero_is_argmax_and_seeds_repeat():
    model = tiny("fast")
    composer = Composer(model, SEQ)
    primer = np.random.default_rng(3).integers(0, len(VOCAB), size=(1, SEQ))
    greedy = composer.generate(primer, 12, temperature=0.0)[0]
    states = composer.zero_states(1)
    for t in range(SEQ):
        probs, states = composer.step(primer[:, t], states)
    manual = []
    for _ in range(12):
        manual.append(int(np.argmax(probs[0])))
        probs, states = composer.step(np.array([manual[-1]]), states)
    assert greedy.tolist() == manual

    a = composer.generate(primer, 40, temperature=1.5, seed=7)
    b = composer.generate(primer, 40, temperature=1.5, seed=7)
    c = composer.generate(primer, 40, temperature=1.5, seed=8)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_sample_next_temperature_and_top_k():
    probs = np.array([0.1, 0.6, 0.3])
    rng = np.random.default_rng(0)
    assert sampling.sample_next(probs, 0.0, None, rng) == 1
    draws = [sampling.sample_next(probs, 1.0, 2, rng) for _ in range(400)]
    assert 0 not in draws and {1, 2} <= set(draws)
    cold = [sampling.sample_next(probs, 0.05, None, rng) for _ in range(200)]
    assert cold.count(1) > 195
    with pytest.raises(ValueError):
        sampling.sample_next(probs, -1.0, None, rng)


def test_longest_loop():
    assert repeats.longest_loop(["A4", "B4", "C5", "D4"]) == (0, 0)
    assert repeats.longest_loop(["C4"] + ["A4", "B4", "E4"] * 3 + ["D4"]) == (3, 9)
    assert repeats.longest_loop(["E4"] * 6) == (1, 6)


def test_piano_roll_and_audio():
    tokens = ["C4", "0.4.7", "E4", "G2"]
    events = REF.note_events(tokens)
    image = plots.piano_roll(events)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert len(events) == 1 + 3 + 1 + 1  # the chord is three notes at one onset
    wave = audio.synthesize(events)
    assert wave.dtype == np.float32 and np.abs(wave).max() <= 1.0
    assert np.sqrt(np.mean(wave**2)) > 0.05
    assert len(wave) == round(
        (len(tokens) * 0.5 * audio.SECONDS_PER_QUARTER + audio.TAIL_SECONDS) * audio.SAMPLE_RATE
    )


def test_cli_writes_midi_that_reads_back_as_the_tokens(model_dir, tmp_path, capsys):
    out = tmp_path / "piece.mid"
    code = generate.main(
        [
            "--model-dir",
            str(model_dir),
            "--output",
            str(out),
            "--length",
            "40",
            "--seed",
            "1",
            "--top-k",
            "5",
        ]
    )
    assert code == 0
    info = json.loads((tmp_path / "piece.json").read_text())
    tokens = info["tokens_text"]
    assert len(tokens) == 40 and set(tokens) <= set(VOCAB)
    assert reference.tokens_from_midi_bytes(out.read_bytes()) == tokens
    png = tf.io.decode_png(tf.io.read_file(str(tmp_path / "piece.png"))).numpy()
    title = summary.settings_title("piece.mid", "reference", 40, 1.0, 5, None, 1)
    assert (
        title == "piece.mid: 40 tokens, reference encoding, temperature 1, top-k 5, top-p -, seed 1"
    )
    assert (png == plots.piano_roll(REF.note_events(tokens), title=title)).all()
    stdout = capsys.readouterr().out
    assert (
        "tokens generated   40" in stdout and "longest loop" in stdout and "pitch range" in stdout
    )
    assert not (tmp_path / "piece.wav").exists()  # only with --wav


def test_wav_and_top_p_from_the_cli(model_dir, tmp_path, capsys):
    import wave

    out = tmp_path / "heard.mid"
    assert (
        generate.main(
            [
                "--model-dir",
                str(model_dir),
                "--output",
                str(out),
                "--length",
                "30",
                "--seed",
                "4",
                "--top-p",
                "0.9",
                "--wav",
            ]
        )
        == 0
    )
    assert "audio " + str(tmp_path / "heard.wav") in capsys.readouterr().out
    with wave.open(str(tmp_path / "heard.wav")) as w:
        # 30 tokens of 0.5 quarter at 120 bpm: 7.5 s, and the synthesiser's tail
        assert w.getframerate() == audio.SAMPLE_RATE and w.getnchannels() == 1
        assert w.getnframes() == round((30 * 0.25 + audio.TAIL_SECONDS) * audio.SAMPLE_RATE)
    written = json.loads((tmp_path / "heard.json").read_text())
    tokens = written["tokens_text"]
    assert written["loop_share"] == repeats.longest_loop(tokens)[1] / 30
    again = tmp_path / "again.mid"
    assert (
        generate.main(
            [
                "--model-dir",
                str(model_dir),
                "--output",
                str(again),
                "--length",
                "30",
                "--seed",
                "4",
                "--top-p",
                "0.9",
            ]
        )
        == 0
    )
    # seeded: repeats
    assert json.loads((tmp_path / "again.json").read_text())["tokens_text"] == tokens
    capsys.readouterr()
    with pytest.raises(SystemExit):
        generate_flags.parse_args(["--model-dir", "m", "--output", "o.mid", "--top-p", "0"])
    assert "--top-p must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_temperature_that_is_not_a_finite_number_is_refused_before_the_model_loads(
    value, tmp_path, capsys
):
    """Refused by the flags' own check, as ``-1`` is: the model folder does not even exist."""
    with pytest.raises(SystemExit):
        generate.main(
            ["--model-dir", str(tmp_path / "none"), "--output", "o.mid", "--temperature", value]
        )
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line == (
        f"lstm-composer generate: error: --temperature must be a finite number >= 0, not {float(value)}"
    )


def test_top_p_narrows_what_the_composer_draws():
    """A nucleus of 0.5 keeps about one token per step here; top-p 1 keeps them all."""
    composer = Composer(tiny("fast"), SEQ)
    primer = np.random.default_rng(3).integers(0, len(VOCAB), size=(4, SEQ))
    narrow = composer.generate(primer, 60, temperature=1.0, top_p=0.05, seed=1)
    greedy = composer.generate(primer, 60, temperature=0.0)
    assert narrow.tolist() == greedy.tolist()  # the nucleus of 0.05 is the likeliest token alone
    wide = composer.generate(primer, 60, temperature=1.0, top_p=1.0, seed=1)
    assert wide.tolist() == composer.generate(primer, 60, temperature=1.0, seed=1).tolist()


def test_num_samples_and_window_context_from_the_cli(model_dir, tmp_path):
    out = tmp_path / "set.mid"
    assert (
        generate.main(
            [
                "--model-dir",
                str(model_dir),
                "--output",
                str(out),
                "--length",
                "10",
                "--num-samples",
                "2",
                "--context",
                "window",
                "--temperature",
                "0",
            ]
        )
        == 0
    )
    assert (tmp_path / "set-1.mid").exists() and (tmp_path / "set-2.mid").exists()


def test_primer_midi_unknown_tokens_are_skipped_and_short_primers_refused(
    model_dir, tmp_path, capsys
):
    primer = tmp_path / "primer.mid"
    primer.write_bytes(
        reference.midi_bytes_from_tokens(
            ["C4", "D4", "F#4", "E4", "F4", "G4", "A4", "B4", "C5", "A3"]
        )
    )
    code = generate.main(
        [
            "--model-dir",
            str(model_dir),
            "--output",
            str(tmp_path / "o.mid"),
            "--length",
            "5",
            "--primer",
            str(primer),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "skipped 1 of 10 tokens" in captured.err
    short = tmp_path / "short.mid"
    short.write_bytes(reference.midi_bytes_from_tokens(["C4", "D4", "E4"]))
    code = generate.main(
        ["--model-dir", str(model_dir), "--output", str(tmp_path / "p.mid"), "--primer", str(short)]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "has 3 usable tokens; the model needs a window of 8" in err
        and "Traceback" not in err
    )


def test_missing_model_dir_is_one_clear_message(tmp_path, capsys):
    code = generate.main(["--model-dir", str(tmp_path), "--output", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and "model.keras not found" in err


def test_tensorboard_sample_summaries_hold_image_and_audio(model_dir, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    bundle = export.load_bundle(str(model_dir))
    composer = Composer(bundle.model, SEQ)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tokens = tensorboard_samples.log_greedy_sample(
            composer, bundle.primers[0], bundle.vocab, 3, REF, length=16
        )
    writer.close()
    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    tensors = {tag: acc.Tensors(tag) for tag in acc.Tags()["tensors"]}
    image_event = tensors["sample/piano_roll"][0]
    assert image_event.step == 3
    width, height = (int(v) for v in tf.make_ndarray(image_event.tensor_proto)[:2])
    assert width == 1400 and height > 200  # the matplotlib figure of trainer.plots
    clip = tf.make_ndarray(tensors["sample/audio"][0].tensor_proto)
    wave, rate = tf.audio.decode_wav(clip.reshape(-1)[0])
    assert int(rate) == audio.SAMPLE_RATE
    assert wave.shape[0] > audio.SAMPLE_RATE  # 16 tokens of 0.25 s: several seconds
    assert float(tf.math.reduce_std(wave)) > 0.01  # not silent
    text = tf.make_ndarray(tensors["sample/tokens"][0].tensor_proto)
    assert text.reshape(-1)[0].decode() == " ".join(tokens) and len(tokens) == 16


# ------------------------------------------------------------------- paths checked before composing


def one_error_line(err: str, prog: str = "lstm-composer generate") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def test_output_that_cannot_be_written_is_one_line_before_composing(
    model_dir, tmp_path, capsys, monkeypatch
):
    from helpers import unwritable_folder

    composed = []
    monkeypatch.setattr(Composer, "generate", lambda *a, **k: composed.append(1))  # must never run
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = tmp_path / "existing"
    folder.mkdir()
    cases = [
        (
            str(folder),
            f"--output {folder} is a folder; give a file name such as {folder}/piece.mid",
        ),
        (
            str(blocker / "piece.mid"),
            f"--output {blocker}/piece.mid: {blocker} is a file, not a folder",
        ),
        (str(blocker / "deeper" / "piece.mid"), f"{blocker} is a file, not a folder"),
    ]
    readonly = unwritable_folder(tmp_path)
    if readonly is not None:
        cases.append(
            (
                str(readonly / "piece.mid"),
                f"--output {readonly}/piece.mid: cannot write into {readonly}: ",
            )
        )
    for output, message in cases:
        code = generate.main(["--model-dir", str(model_dir), "--output", output, "--length", "5"])
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and message in line, line
    assert composed == []
    # the unwritable folder, for a normal user
    left = {p.name for p in tmp_path.iterdir()} - {"read-only"}
    assert left == {"a-file", "existing"}  # no folder made, no probe left
    assert list(folder.iterdir()) == [] and blocker.read_text() == "not a folder"


def test_primer_that_is_a_folder_is_one_line(model_dir, tmp_path, capsys):
    code = generate.main(
        [
            "--model-dir",
            str(model_dir),
            "--output",
            str(tmp_path / "x.mid"),
            "--primer",
            str(tmp_path),
        ]
    )
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and f"--primer {tmp_path} is a folder; give one MIDI file" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folders_are_made(model_dir, tmp_path):
    out = tmp_path / "new" / "deeper" / "piece.mid"
    assert (
        generate.main(
            ["--model-dir", str(model_dir), "--output", str(out), "--length", "5", "--seed", "1"]
        )
        == 0
    )
    assert out.exists() and out.with_suffix(".png").exists() and out.with_suffix(".json").exists()
    assert not [p for p in out.parent.iterdir() if "probe" in p.name]


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_hidden_unless_verbose(model_dir, tmp_path):
    """TensorFlow writes its start-up lines (here: cudart_stub, cuInit) from C++ before any setting
    applies; a plain run shows none of them, --verbose shows them, and the piece is the same."""
    import os
    import subprocess
    import sys

    from preprocessing import quiet

    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)
    }
    runs = {}
    for name, extra in (("quiet", []), ("verbose", ["--verbose"])):
        runs[name] = subprocess.run(
            [
                sys.executable,
                "-m",
                "lstm_composer",
                "generate",
                "--model-dir",
                str(model_dir),
                "--output",
                str(tmp_path / f"{name}.mid"),
                "--length",
                "12",
                "--seed",
                "4",
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert runs[name].returncode == 0, runs[name].stderr
    native = {
        name: [line for line in run.stderr.splitlines() if quiet.is_native_log_line(line)]
        for name, run in runs.items()
    }
    assert native["quiet"] == [] and "Traceback" not in runs["quiet"].stderr, runs["quiet"].stderr
    assert native["verbose"], runs["verbose"].stderr
    assert runs["quiet"].stdout.replace("quiet", "verbose") == runs["verbose"].stdout
    assert (tmp_path / "quiet.mid").read_bytes() == (tmp_path / "verbose.mid").read_bytes()


def test_a_long_composition_says_how_far_it_is():
    """Nothing in the first seconds (a short piece stays quiet), then a line now and then."""
    import io

    now = [0.0]
    out = io.StringIO()
    progress = generate.ComposingProgress(100_000, out=out, clock=lambda: now[0])
    for done, seconds in ((1_000, 1.0), (5_000, 4.9), (6_000, 5.0), (7_000, 9.0), (12_000, 15.0)):
        now[0] = seconds
        progress(done)
    lines = out.getvalue().splitlines()
    assert lines == [
        "composing: 6,000 of 100,000 tokens (6 %), 1,200 tokens/s",
        "composing: 12,000 of 100,000 tokens (12 %), 800 tokens/s",
    ]
    now[0] = 99.0
    progress(100_000)  # the last token: the summary follows at once
    assert len(out.getvalue().splitlines()) == 2


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[[1, 2, 3]]", 'is not {"windows": [[token id, ...], ...]} as training writes it'),
        ('{"windows": []}', "holds no windows"),
        ('{"windows": [[0, 1, 2, 3, 4, 5, 6, 99]]}', "window 0 holds the id 99, outside the"),
        ('{"windows": [[0, 1, 2]]}', f"window 0 has 3 token ids; the model reads windows of {SEQ}"),
        ("{'windows': [", "is not JSON"),
    ],
)
def test_a_damaged_primers_file_is_one_line_that_says_what_is_wrong(
    model_dir, tmp_path, capsys, content, problem
):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "primers.json").write_text(content)
    code = generate.main(
        ["--model-dir", str(copy), "--output", str(tmp_path / "x.mid"), "--length", "4"]
    )
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and f"{copy / 'primers.json'} {problem}" in line
    assert line.endswith("give a MIDI file with --primer, or export the model again by training it")
    assert not (tmp_path / "x.mid").exists()


def test_an_edited_vocabulary_in_a_model_folder_is_refused_with_the_model_folders_remedy(
    model_dir, tmp_path, capsys
):
    """Not "run the preprocessing job again into this folder": a model folder's vocab.json is a
    copy of its data folder's."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "vocab.json").write_text(records.vocab_to_json([*VOCAB[:-1], "D#9"]))
    code = generate.main(["--model-dir", str(copy), "--output", str(tmp_path / "x.mid")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "vocab.json does not match the model's manifest" in line
    assert line.endswith(
        "copy it from the data folder the model was trained on, or train the model again"
    )
    assert "preprocessing job" not in line


def test_generate_never_writes_into_the_model_folder(model_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    for output in (copy / "model.keras", copy / "manifest", copy / "sub" / "piece.mid"):
        assert (
            generate.main(["--model-dir", str(copy), "--output", str(output), "--length", "4"]) == 2
        )
        line = one_error_line(capsys.readouterr().err)
        assert f"is inside the model folder {copy}" in line
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_generate_replaces_only_its_own_earlier_outputs(model_dir, tmp_path, capsys):
    out = tmp_path / "piece.mid"
    argv = ["--model-dir", str(model_dir), "--output", str(out), "--length", "6", "--seed", "1"]
    assert generate.main(argv) == 0
    assert (
        json.loads((tmp_path / "piece.json").read_text())["written_by"] == "lstm-composer generate"
    )
    assert generate.main(argv) == 0  # its own earlier output: replaced
    capsys.readouterr()
    mine = tmp_path / "mine.mid"
    mine.write_bytes(b"a MIDI file of my own")
    picture = tmp_path / "other.png"
    picture.write_bytes(b"a picture of my own")
    for output, kept in ((mine, mine), (tmp_path / "other.mid", picture)):
        code = generate.main(
            ["--model-dir", str(model_dir), "--output", str(output), "--length", "4"]
        )
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and f"would overwrite {kept}, which is not an earlier output" in line
    assert mine.read_bytes() == b"a MIDI file of my own"
    assert picture.read_bytes() == b"a picture of my own"
