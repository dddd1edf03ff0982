"""``train --objective sequence``: a network that predicts the token after every position of its
window, trained, validated, measured by ``evaluate`` and composing as the ``last`` objective's
does; and the layouts and flags each objective refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import synthetic
import tensorflow as tf
from helpers import TINY, main_output, scalars, tiny_training

import lstm_composer
from preprocessing import records
from trainer import evaluate, steps, task
from trainer import model as model_lib
from trainer.baselines import EVERY_POSITION
from trainer.composer import Composer

SEQ, VOCAB = 8, 12


def sequence_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    return model_lib.fast(
        SEQ, VOCAB, units=16, num_layers=2, dense_units=16, embedding_dim=8, objective="sequence"
    )


def test_a_sequence_model_predicts_every_position_and_its_step_copy_each_of_them():
    model = sequence_model()
    assert model_lib.every_position(model) and not model_lib.every_position(
        model_lib.fast(SEQ, VOCAB, units=16, num_layers=2, dense_units=16, embedding_dim=8)
    )
    windows = np.random.default_rng(1).integers(0, VOCAB, size=(3, SEQ))
    full = model(windows, training=False).numpy()
    assert full.shape == (3, SEQ, VOCAB)
    composer = Composer(model, SEQ)
    states = composer.zero_states(3)
    for t in range(SEQ):  # the carried state after t + 1 tokens is the full model's position t
        probs, states = composer.step(windows[:, t], states)
        np.testing.assert_allclose(probs, full[:, t], atol=1e-5)
    np.testing.assert_allclose(composer.window_probabilities(windows), full[:, -1], atol=1e-6)
    carried = composer.generate(windows, 12, temperature=0.0)
    assert carried.shape == (3, 12) and carried.max() < VOCAB


def test_the_sequence_loss_is_the_mean_over_positions_and_validation_sums_both():
    model = sequence_model()
    rng = np.random.default_rng(2)
    window = rng.integers(0, VOCAB, size=(4, SEQ + 1))
    inputs, following = tf.constant(window[:, :-1]), tf.constant(window[:, 1:])
    probabilities = model(inputs, training=False)
    per_window = steps.window_losses(model, following, probabilities).numpy()
    p = probabilities.numpy().astype(np.float64)
    by_hand = -np.log(np.take_along_axis(p, window[:, 1:, None], axis=2)[..., 0]).mean(axis=1)
    np.testing.assert_allclose(per_window, by_hand, rtol=1e-4)
    strategy = tf.distribute.get_strategy()
    eval_steps = steps.eval_steps_function(strategy, model)
    stream = tf.data.Dataset.from_tensors((inputs, following, tf.constant([1.0, 1, 1, 0])))
    sums = eval_steps(iter(strategy.experimental_distribute_dataset(stream)), tf.constant(1))
    metrics = steps.validation_metrics(sums.numpy())
    expected_last = evaluate.next_token_scores(p[:3, -1], window[:3, -1])
    expected_every = evaluate.next_token_scores(
        p[:3].reshape(-1, VOCAB), window[:3, 1:].reshape(-1)
    )
    for key, value in expected_last.items():
        assert metrics[key] == pytest.approx(value, rel=1e-4), key
        assert metrics[key + EVERY_POSITION] == pytest.approx(expected_every[key], rel=1e-4), key


@pytest.fixture(scope="module")
def sequence_job(records_dir, tmp_path_factory):
    """Two epochs of a tiny sequence model on the pipeline's output, then ``evaluate``."""
    job = tmp_path_factory.mktemp("sequence-job")
    code, log = main_output(
        task.main, [*tiny_training(records_dir, job, epochs=2), "--objective", "sequence"]
    )
    assert code == 0
    out = tmp_path_factory.mktemp("sequence-evaluation") / "evaluation.json"
    code, table = main_output(
        lstm_composer.main,
        [
            "evaluate",
            *("--model-dir", str(job / "model"), "--data-dir", str(records_dir)),
            *("--samples", "2", "--length", "40", "--output", str(out)),
        ],
    )
    assert code == 0
    return {
        "job": job,
        "log": log,
        "scalars": scalars(str(job / "logs")),
        "report": json.loads(out.read_text()),
        "table": table,
    }


@pytest.mark.slow
def test_sequence_training_reports_both_positions_beside_their_baselines(sequence_job):
    values = sequence_job["scalars"]
    for name in ("val_loss", "val_accuracy", "val_top5_accuracy", "perplexity"):
        for tag in (f"epoch/{name}", f"epoch/{name}{EVERY_POSITION}"):
            assert [step for step, _ in values[tag]] == [1, 2], tag
    for name in ("unigram_val_accuracy", "bigram_val_accuracy"):
        for tag in (f"baseline/{name}", f"baseline/{name}{EVERY_POSITION}"):
            assert len(values[tag]) == 1 and 0 <= values[tag][0][1] <= 1, tag
    log = sequence_job["log"]
    assert "--objective sequence" in log and "crops of 9 tokens a pass" in log
    assert "baselines (validation next-token accuracy): unigram" in log and "every position:" in log
    assert "music/loop_share" in values  # the TensorBoard samples compose with it


@pytest.mark.slow
def test_evaluate_scores_a_sequence_model_as_the_trainer_does(sequence_job):
    values, scores = sequence_job["scalars"], sequence_job["report"]["next_token"]
    for key in ("val_accuracy", "val_top5_accuracy"):
        for suffix in ("", EVERY_POSITION):
            assert scores[key + suffix] == pytest.approx(
                values[f"epoch/{key}{suffix}"][-1][1], abs=1e-4
            ), key + suffix
    for key in ("unigram_val_accuracy", "bigram_val_accuracy"):
        for suffix in ("", EVERY_POSITION):
            assert scores[key + suffix] == pytest.approx(
                values[f"baseline/{key}{suffix}"][0][1], abs=1e-6
            )
    table = sequence_job["table"]
    assert "after the window: accuracy" in table and "at every position: accuracy" in table


@pytest.mark.slow
def test_a_sequence_model_composes_from_the_command_line(sequence_job, tmp_path):
    for context in ("carry", "window"):
        out = tmp_path / f"{context}.mid"
        code = lstm_composer.main(
            [
                "generate",
                *("--model-dir", str(sequence_job["job"] / "model"), "--output", str(out)),
                *("--length", "30", "--context", context, "--seed", "1"),
            ]
        )
        assert code == 0 and out.stat().st_size > 0


def run_main(argv, capsys) -> tuple[int, str]:
    code = task.main(argv)
    return code, capsys.readouterr().err.strip()


def test_the_reference_network_has_the_last_objective_only(capsys):
    code, err = run_main(
        ["--data-dir", "x", "--model", "reference", "--objective", "sequence"], capsys
    )
    assert code == 2 and len(err.splitlines()[-1:]) == 1
    assert err.splitlines()[-1].endswith(
        "--model reference predicts the token after the window only, as the notebook's: "
        "--objective sequence needs --model fast"
    )


def test_stored_windows_at_a_stride_refuse_the_last_objective_and_train_the_sequence_one(
    tmp_path, capsys
):
    """A format-2 folder written with --stride 3 holds one window in three."""
    data = tmp_path / "old"
    synthetic.write_dataset(str(data), layout=records.WINDOWS, stride=3, piece_length=40)
    argv = ["--data-dir", str(data), "--epochs", "1", "--sample-every", "0", *TINY]
    code, err = run_main([*argv, "--job-dir", str(tmp_path / "job1")], capsys)
    assert code == 2 and "\n" not in err
    assert "stores one window every 3 tokens (format 2, --stride 3)" in err
    assert err.endswith("or train with --objective sequence")
    assert not (tmp_path / "job1").exists()
    job = tmp_path / "job2"
    code, _ = run_main([*argv, "--job-dir", str(job), "--objective", "sequence"], capsys)
    assert code == 0 and (job / "model" / "model.keras").exists()


def test_a_folder_written_before_spans_still_trains(tmp_path, capsys):
    data = tmp_path / "old"
    synthetic.write_dataset(str(data), layout=records.WINDOWS, piece_length=30)
    job = tmp_path / "job"
    argv = ["--data-dir", str(data), "--job-dir", str(job), "--epochs", "1", *TINY]
    code, _ = run_main([*argv, "--sample-every", "0"], capsys)
    assert (
        code == 0
        and json.loads((job / "model" / "manifest.json").read_text())["format_version"] == 2
    )


def test_a_backup_of_the_other_objective_is_another_run(tmp_path, capsys):
    data = tmp_path / "data"
    synthetic.write_dataset(str(data), piece_length=30)
    argv = [
        *("--data-dir", str(data), "--job-dir", str(tmp_path / "job")),
        *("--epochs", "1", "--sample-every", "0", *TINY),
    ]
    assert run_main(argv, capsys)[0] == 0
    code, err = run_main([*argv, "--epochs", "2", "--objective", "sequence"], capsys)
    assert code == 2 and "--objective last → sequence" in err
