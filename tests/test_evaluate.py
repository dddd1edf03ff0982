"""``lstm-composer evaluate`` on a tiny model trained here, the trainer's music measures in
TensorBoard, and the progress lines a training run prints when its output is not a terminal."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from helpers import TINY, main_output, scalars, tiny_training

import lstm_composer
from trainer import evaluate, measures, sampling, task

PROGRESS_LINE = re.compile(
    r"^trainer: epoch (\d)/3: step (\d+)/(\d+) \((\d+) %\), ([0-9.e+]+) steps/s, loss ([0-9.]+)$"
)


@pytest.fixture(scope="module")
def trained(records_dir, tmp_path_factory):
    """Three epochs of a tiny model, music measures sampled every 2 epochs (so at 2 and, the end,
    3); its stdout kept (a StringIO is not a terminal)."""
    job = tmp_path_factory.mktemp("evaluated-job")
    code, stdout = main_output(task.main, tiny_training(records_dir, job, epochs=3))
    assert code == 0
    return {
        "job": job,
        "data": records_dir,
        "stdout": stdout,
        "scalars": scalars(str(job / "logs")),
    }


def evaluated_with(trained, out) -> list[str]:
    """The flags of the module's evaluation (3 pieces of 60 tokens, seed 2, top-p 0.95)."""
    return [
        "--model-dir",
        str(trained["job"] / "model"),
        "--data-dir",
        str(trained["data"]),
        "--samples",
        "3",
        "--length",
        "60",
        "--seed",
        "2",
        "--top-p",
        "0.95",
        "--output",
        str(out),
    ]


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation") / "sub" / "evaluation.json"
    code, stdout = main_output(
        lstm_composer.main,
        ["evaluate", *evaluated_with(trained, out)],
    )
    assert code == 0
    return {"json": json.loads(out.read_text()), "stdout": stdout}


@pytest.mark.slow
def test_progress_lines_inside_each_epoch(trained):
    lines = [m for m in map(PROGRESS_LINE.match, trained["stdout"].splitlines()) if m]
    assert {int(m.group(1)) for m in lines} == {1, 2, 3}
    for m in lines:
        assert float(m.group(5)) > 0 and float(m.group(6)) > 0  # steps/s and the running loss
    ends = [m for m in lines if m.group(2) == m.group(3)]
    # each epoch's last line is its end
    assert len(ends) == 3 and all(m.group(4) == "100" for m in ends)
    per_epoch = int(ends[0].group(3))
    # a line at least every tenth
    assert sum(1 for m in lines if m.group(1) == "1") >= min(per_epoch, 10)


@pytest.mark.slow
def test_trainer_logs_the_music_measures_when_sampling_and_at_the_end(trained):
    values = trained["scalars"]
    for name in measures.MEASURES + (measures.OVERLAP,):
        if name == "empty_beat_rate":  # n/a for the reference encoding: never logged as a number
            assert f"music/{name}" not in values
            continue
        # --sample-every 2, and the end
        assert [step for step, _ in values[f"music/{name}"]] == [2, 3], name
        # the overlap compares the two sides: it has no validation value
        if name != measures.OVERLAP:
            assert [step for step, _ in values[f"music_validation/{name}"]] == [2], name
    assert 0 < values["music/pitch_class_histogram_overlap"][-1][1] <= 1
    assert 0 <= values["music/loop_share"][-1][1] <= 1


@pytest.mark.slow
def test_evaluate_writes_every_measure_and_prints_the_table(report):
    doc, stdout = report["json"], report["stdout"]
    bits = ("val_bits_per_beat", "val_bits_per_note")
    assert set(doc["next_token"]) == {"validation_windows", *evaluate.NEXT_TOKEN, *bits}
    assert all(doc["next_token"][key] is not None for key in (*evaluate.NEXT_TOKEN, *bits))
    rate = doc["validation_rate"]
    assert rate["tokens_per_beat"] == 2.0  # the reference: one token every half quarter note
    assert rate["tokens"] == 2 * rate["quarter_notes"] and rate["notes"] >= rate["tokens"]
    music = doc["music"]
    for side in ("generated", "validation"):
        assert set(music[side]) == set(measures.MEASURES)
        assert all(
            music[side][name] is not None for name in measures.MEASURES if name != "empty_beat_rate"
        )
    assert (
        music["generated"]["empty_beat_rate"] is None
        and "empty_beat_rate" in music["not_applicable"]
    )
    assert 0 < music[measures.OVERLAP] <= 1
    assert music["generated_pieces"] == len(music["per_piece"]) == 3
    assert music["validation_excerpts"] >= 1 and 30 <= music["validation_excerpt_tokens"][0] <= 60
    assert doc["settings"] == {
        "samples": 3,
        "length": 60,
        "temperature": 1.0,
        "top_k": None,
        "top_p": 0.95,
        "seed": 2,
        "context": "carry",
    }
    for text in (
        "next token",
        "accuracy",
        "bigram",
        "unigram",
        "perplexity",
        "bits per beat, per note",
        *measures.MEASURES,
        measures.OVERLAP,
        "n/a: empty_beat_rate",
        "wrote ",
    ):
        assert text in stdout, text


@pytest.mark.slow
def test_evaluate_scores_as_the_trainer_does(trained, report):
    """The exported model is the last epoch's: on the same validation windows, the same figures."""
    values, scores = trained["scalars"], report["json"]["next_token"]
    assert scores["val_accuracy"] == pytest.approx(values["epoch/val_accuracy"][-1][1], abs=1e-4)
    assert scores["val_top5_accuracy"] == pytest.approx(
        values["epoch/val_top5_accuracy"][-1][1], abs=1e-4
    )
    assert scores["perplexity"] == pytest.approx(values["epoch/perplexity"][-1][1], rel=1e-3)
    for key in ("val_bits_per_beat", "val_bits_per_note"):
        assert scores[key] == pytest.approx(values[f"epoch/{key}"][-1][1], rel=1e-3)
    for key in ("unigram_val_accuracy", "bigram_val_accuracy"):
        # TensorBoard keeps float32
        assert scores[key] == pytest.approx(values[f"baseline/{key}"][0][1], abs=1e-6)


@pytest.mark.slow
def test_evaluate_is_repeatable_with_its_seed(trained, report, tmp_path):
    out = tmp_path / "again.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert evaluate.main(evaluated_with(trained, out)) == 0
    again = json.loads(out.read_text())
    assert again["music"] == report["json"]["music"]


@pytest.mark.slow
def test_evaluate_refuses_other_data_in_one_line(trained, tmp_path, capsys):
    import synthetic

    other = tmp_path / "other"
    synthetic.write_dataset(str(other), vocab_size=20, sequence_length=8)
    code = evaluate.main(
        [
            "--model-dir",
            str(trained["job"] / "model"),
            "--data-dir",
            str(other),
            "--output",
            str(tmp_path / "e.json"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("lstm-composer evaluate: error: ") and "is not the data" in err
    )
    assert "vocab_size" in err and "20 in the data" in err and err.count("\n") == 1
    assert not (tmp_path / "e.json").exists()


@pytest.mark.slow
def test_evaluate_continue_on_pieces_shorter_than_the_opening_is_one_line(
    trained, tmp_path, capsys
):
    """The validation pieces hold 120 tokens (15 bars of the reference): an opening of 20 bars
    leaves nothing to continue, said before any work, and no file is written."""
    argv = ["--model-dir", str(trained["job"] / "model"), "--data-dir", str(trained["data"])]
    out = tmp_path / "e.json"
    code = evaluate.main([*argv, "--continue", "--opening-bars", "20", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "opening of 20 bars" in err
    assert "the longest has 15 bars" in err and not out.exists()
    assert evaluate.main([*argv, "--continue", "--opening-bars", "0"]) == 2
    assert "--opening-bars must be at least 1" in capsys.readouterr().err


def test_evaluate_refuses_bad_flags_and_folders_in_one_line(tmp_path, capsys):
    assert evaluate.main(["--model-dir", "m", "--data-dir", "d", "--top-p", "1.5"]) == 2
    assert "lstm-composer evaluate: error: --top-p must be in (0, 1]" in capsys.readouterr().err
    for value in ("nan", "inf"):  # refused at parse time, before any model is loaded
        assert evaluate.main(["--model-dir", "m", "--data-dir", "d", "--temperature", value]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.endswith(f"--temperature must be a finite number >= 0, not {float(value)}")
    assert (
        evaluate.main(
            [
                "--model-dir",
                str(tmp_path),
                "--data-dir",
                str(tmp_path),
                "--output",
                str(tmp_path / "e.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "model.keras not found" in err and "Traceback" not in err
    assert evaluate.main(["--model-dir", "m", "--data-dir", "d", "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_evaluate_composes_with_generates_defaults():
    from trainer import generate_flags

    ours = evaluate.parse_args(["--model-dir", "m", "--data-dir", "d"])
    theirs = generate_flags.parse_args(["--model-dir", "m", "--output", "o.mid"])
    for key in ("length", "temperature", "top_k", "top_p", "context"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert evaluate.CONTEXTS == sampling.CONTEXTS


@pytest.mark.slow
def test_the_end_of_training_is_sampled_and_a_failed_sample_does_not_end_the_job(tmp_path, capsys):
    """Epoch 1 of 1 is sampled although --sample-every is 5; the synthetic tokens (tok0, …) are no
    notes, so drawing them fails: one warning, and the job finishes."""
    import synthetic

    data = tmp_path / "data"
    synthetic.write_dataset(str(data), train_pieces=3, validation_pieces=1, piece_length=24)
    assert (
        task.main(
            [
                "--data-dir",
                str(data),
                "--job-dir",
                str(tmp_path / "job"),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--sample-every",
                "5",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "warning: the TensorBoard sample of epoch 1 failed (PitchException: " in out
    assert "training goes on" in out and "model written" in out
    # nor are bits per beat: the tokens have no length in beats, said once, never a number
    assert "val_bits_per_beat and _per_note are not reported" in out
    assert "val_bits_per_beat=" not in out


@pytest.mark.slow
def test_evaluate_refuses_a_folder_that_holds_out_other_pieces(
    trained, training_midi_dir, tmp_path, capsys
):
    """Issue 18: the same files preprocessed again at --validation-fraction 0.6 have the model's
    vocabulary and sequence length, but most of their validation pieces are the model's training
    pieces: scored on them, the model would look better than it is."""
    from preprocessing import pipeline

    other = tmp_path / "data-0.6"
    flags = ["--sequence-length", "8", "--validation-fraction", "0.6"]
    argv = ["--input", str(training_midi_dir), "--output", str(other), *flags]
    pipeline.run([*argv, "--direct_running_mode", "in_memory"])
    model = trained["job"] / "model"
    model_manifest = json.loads((model / "manifest.json").read_text())
    assert model_manifest["validation_pieces_hash"]  # model/ records which pieces were held out
    capsys.readouterr()
    code = evaluate.main(["--model-dir", str(model), "--data-dir", str(other), "--samples", "1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith(f"lstm-composer evaluate: error: {other} is not the data")
    assert "other validation pieces" in line and "--validation-fraction 0.6" in line
    assert "--validation-fraction 0.25" in line and "vocab" not in line
