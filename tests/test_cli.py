"""The console script and ``python -m`` entry points: one parser per job, reachable both ways."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import lstm_composer


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_subcommand_help_is_the_modules_own_parser():
    via_script = run("lstm-composer", "preprocess", "--help")
    via_module = run(sys.executable, "-m", "preprocessing.pipeline", "--help")
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
    assert "--sequence-length" in via_script.stdout and "--validation-fraction" in via_script.stdout


def test_unknown_subcommand_lists_the_known_ones(capsys):
    assert lstm_composer.main(["compose-symphony"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'compose-symphony'" in err
    for name in lstm_composer.SUBCOMMANDS:
        assert name in err


def test_every_subcommand_resolves_to_a_function():
    for name in lstm_composer.SUBCOMMANDS:
        assert callable(lstm_composer.entry_point(name)), name


@pytest.mark.slow
def test_python_dash_m_pipeline_end_to_end(midi_corpus, tmp_path):
    """As a script, Beam's worker processes must still find Piece and the DoFns by module name."""
    out = tmp_path / "out"
    result = run(sys.executable, "-m", "preprocessing.pipeline", "--input", str(midi_corpus["dir"]),
                 "--output", str(out), "--sequence-length", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "preprocessing finished" in result.stdout and "train windows" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["files_failed"] == len(midi_corpus["bad"])
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_quickstart_runs_the_whole_chain_at_its_smallest(training_midi_dir, tmp_path, capsys):
    from preprocessing import notes

    work = tmp_path / "qs"
    code = lstm_composer.quickstart([
        "--workdir", str(work), "--input", str(training_midi_dir), "--sequence-length", "8", "--epochs", "2",
        "--steps-per-epoch", "10", "--units", "16", "--layers", "1", "--embedding-dim", "8", "--dense-units", "16",
        "--length", "20", "--sample-every", "1",
    ])
    out = capsys.readouterr().out
    assert code == 0
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert f"{stage} done in" in out
    assert (work / "data" / "manifest.json").exists()
    assert list((work / "job" / "checkpoints").glob("weights-improvement-*.keras"))
    assert list((work / "job" / "logs").glob("events.out.tfevents.*"))
    tokens = json.loads((work / "composition.json").read_text())["tokens_text"]
    assert len(tokens) == 20
    assert notes.tokens_from_midi_bytes((work / "composition.mid").read_bytes()) == tokens
    assert (work / "composition.png").read_bytes().startswith(b"\x89PNG")
    assert f"tensorboard --logdir {work}/job/logs" in out
    assert "bigram baseline" in out and "unigram baseline" in out and "LSTM" in out
