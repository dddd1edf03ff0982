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
    assert (work / "composition.wav").read_bytes().startswith(b"RIFF")  # the preset's --wav
    assert f"tensorboard --logdir {work}/job/logs" in out
    assert "bigram baseline" in out and "unigram baseline" in out and "LSTM" in out


def test_quickstart_routes_each_flag_to_the_jobs_that_know_it():
    import argparse

    from preprocessing import options
    from trainer import flags, generate

    parsers = {"quickstart": lstm_composer.quickstart_parser(), "preprocess": options.build_parser(),
               "train": flags.build_parser(), "generate": generate.build_parser()}
    routed = lstm_composer.route_flags(
        ["--seed", "7", "--sequence-length=12", "--epochs", "2", "--length", "30", "--workdir", "w", "--parts", "first"],
        parsers,
    )
    assert routed == {
        "quickstart": ["--workdir", "w"],
        "preprocess": ["--sequence-length=12", "--parts", "first"],
        "train": ["--seed", "7", "--epochs", "2"],
        "generate": ["--seed", "7", "--length", "30"],
    }
    with pytest.raises(ValueError, match="unrecognized arguments: --epochz"):
        lstm_composer.route_flags(["--epochz", "3"], parsers)
    # The preset is each job's own default; a flag on the command line still wins.
    train_args = flags.parse_args(["--data-dir", "d", "--epochs", "2"], lstm_composer.QUICKSTART_PRESET["train"])
    assert train_args.epochs == 2 and train_args.units == lstm_composer.QUICKSTART_PRESET["train"]["units"]
    assert isinstance(train_args, argparse.Namespace) and flags.parse_args(["--data-dir", "d"]).units == 512


def test_quickstart_refuses_a_folder_flag_and_an_unknown_flag_in_one_line(capsys):
    assert lstm_composer.quickstart(["--output", "x"]) == 2
    assert "--output is set from --workdir" in capsys.readouterr().err
    assert lstm_composer.quickstart(["--epochz", "3"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --epochz" in err and "Traceback" not in err
