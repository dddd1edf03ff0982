"""The console script and ``python -m`` entry points: one parser per job, reachable both ways."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_composer
from lstm_composer import quickstart


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
    result = run(
        sys.executable,
        "-m",
        "preprocessing.pipeline",
        "--input",
        str(midi_corpus["dir"]),
        "--output",
        str(out),
        "--sequence-length",
        "8",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "preprocessing finished" in result.stdout and "train windows" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["files_failed"] == len(midi_corpus["bad"])
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_quickstart_runs_the_whole_chain_at_its_smallest(training_midi_dir, tmp_path, capsys):
    from preprocessing.encodings import reference

    work = tmp_path / "qs"
    code = quickstart.main(
        [
            "--workdir",
            str(work),
            "--input",
            str(training_midi_dir),
            "--sequence-length",
            "8",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "10",
            "--units",
            "16",
            "--layers",
            "1",
            "--embedding-dim",
            "8",
            "--dense-units",
            "16",
            "--length",
            "20",
            "--sample-every",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert f"{stage} done in" in out
    assert (work / "data" / "manifest.json").exists()
    assert list((work / "job" / "checkpoints").glob("weights-improvement-*.keras"))
    assert list((work / "job" / "logs").glob("events.out.tfevents.*"))
    tokens = json.loads((work / "composition.json").read_text())["tokens_text"]
    assert len(tokens) == 20
    assert reference.tokens_from_midi_bytes((work / "composition.mid").read_bytes()) == tokens
    assert (work / "composition.png").read_bytes().startswith(b"\x89PNG")
    assert (work / "composition.wav").read_bytes().startswith(b"RIFF")  # the preset's --wav
    assert f"tensorboard --logdir {work}/job/logs" in out
    assert re.search(
        r"^  LSTM \d+\.\d % vs bigram \d+\.\d %: [+-]\d+\.\d points \((clears|is below) the \+2 points bar\)$",
        out,
        re.MULTILINE,
    ), out
    assert (
        re.search(r"exported model \(epoch [12] of 2, the lowest validation loss\)", out)
        and "unigram baseline" in out
    )


def test_the_quickstarts_comparison_says_which_accuracy_it_shows():
    metrics = {
        "val_accuracy": 0.5,
        "bigram_val_accuracy": 0.17,
        "unigram_val_accuracy": 0.07,
        "epoch": 5,
        "last_epoch": 6,
    }
    lines = quickstart.comparison(metrics)
    assert lines[0].endswith(
        "(epoch 5 of 6, the lowest validation loss), of the token after each window (its full "
        "context):"
    )
    assert lines[1] == "  LSTM 50.0 % vs bigram 17.0 %: +33.0 points (clears the +2 points bar)"
    assert len(lines) == 3 and lines[2] == "  unigram baseline 7.0 %"
    every = {
        **metrics,
        "val_accuracy_every_position": 0.45,
        "bigram_val_accuracy_every_position": 0.16,
    }
    assert quickstart.comparison(every)[2] == (
        "  at every position of the windows (what --objective sequence trains): LSTM 45.0 % vs "
        "bigram 16.0 %"
    )


def test_quickstart_routes_each_flag_to_the_jobs_that_know_it():
    import argparse

    from preprocessing import options
    from trainer import flags, generate_flags

    parsers = {
        "quickstart": quickstart.quickstart_parser(),
        "preprocess": options.build_parser(),
        "train": flags.build_parser(),
        "generate": generate_flags.build_parser(),
    }
    routed = quickstart.route_flags(
        [
            "--seed",
            "7",
            "--sequence-length=12",
            "--epochs",
            "2",
            "--length",
            "30",
            "--workdir",
            "w",
            "--parts",
            "first",
        ],
        parsers,
    )
    assert routed == {
        "quickstart": ["--workdir", "w"],
        "preprocess": ["--sequence-length=12", "--parts", "first"],
        "train": ["--seed", "7", "--epochs", "2"],
        "generate": ["--seed", "7", "--length", "30"],
    }
    with pytest.raises(ValueError, match="unrecognized arguments: --epochz"):
        quickstart.route_flags(["--epochz", "3"], parsers)
    # The preset is each job's own default; a flag on the command line still wins.
    train_args = flags.parse_args(["--data-dir", "d", "--epochs", "2"], quickstart.PRESET["train"])
    assert train_args.epochs == 2 and train_args.units == quickstart.PRESET["train"]["units"]
    assert (
        isinstance(train_args, argparse.Namespace)
        and flags.parse_args(["--data-dir", "d"]).units == 512
    )


def test_quickstart_refuses_a_folder_flag_and_an_unknown_flag_in_one_line(capsys):
    assert quickstart.main(["--output", "x"]) == 2
    assert "--output is set from --workdir" in capsys.readouterr().err
    assert quickstart.main(["--epochz", "3"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --epochz" in err and "Traceback" not in err


# ------------------------------------------------------------- one line, in the name the user typed

ROOT = Path(__file__).resolve().parents[1]


def quiet_env() -> dict[str, str]:
    """This process's environment without the settings the tests' own conftest makes (TF's log
    level) or a developer may have (verbosity): what a new user's shell has."""
    from preprocessing import quiet

    return {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)
    }


def lstm_composer_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``lstm-composer ARGS`` in a new process (through ``python -m``, which needs no installed
    script)."""
    return subprocess.run(
        [sys.executable, "-m", "lstm_composer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=quiet_env(),
    )


@pytest.mark.parametrize(
    "sub", ["quickstart", "preprocess", "train", "generate", "evaluate", "submit", "sample-data"]
)
def test_help_names_the_subcommand_and_imports_no_tensorflow(sub):
    code = (
        "import sys, lstm_composer\n"
        f"try:\n    lstm_composer.main([{sub!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=quiet_env(),
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"usage: lstm-composer {sub} ")
    assert "--verbose" in result.stdout and "python -m" not in result.stdout.split("\n\n")[0]
    assert result.stdout.strip().endswith("False")  # --help never waits for TensorFlow


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["preprocess"],
            "lstm-composer preprocess: error: the following arguments are required: --output",
        ),
        (
            ["generate", "--model-dir", "m"],
            "lstm-composer generate: error: the following arguments are required: --output",
        ),
        (
            ["generate", "--model-dir", "m", "--output", "o.mid", "--length", "0"],
            "lstm-composer generate: error: --length must be at least 1",
        ),
        (
            ["train", "--epochs", "1"],
            "lstm-composer train: error: the following arguments are required: --data-dir",
        ),
        (
            ["sample-data", "--workerz", "2"],
            "lstm-composer sample-data: error: unrecognized arguments: --workerz 2",
        ),
    ],
)
def test_usage_errors_name_the_command_the_user_typed(argv, line, capsys):
    try:
        code = lstm_composer.main(argv)
    except SystemExit as exc:  # some jobs let argparse exit, others return its status
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == line
    assert "python -m" not in err


def test_job_errors_name_the_command_the_user_typed(tmp_path, capsys):
    assert (
        lstm_composer.main(
            ["preprocess", "--input", str(tmp_path), "--output", str(tmp_path / "out")]
        )
        == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lstm-composer preprocess: error: no MIDI files")


# ------------------------------------------------------- the quickstart checks all before it starts


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "argument --epochs: must be a positive integer, not 0"),
        (["--temperature", "-1"], "--temperature must be a finite number >= 0, not -1.0"),
        (["--temperature", "nan"], "--temperature must be a finite number >= 0, not nan"),
        (["--top-p", "nan"], "--top-p must be in (0, 1], not nan"),
        (
            ["--learning-rate", "inf"],
            "argument --learning-rate: must be a positive finite number, not inf",
        ),
        (["--length", "0"], "--length must be at least 1"),
        (["--sequence-length", "0"], "--sequence-length must be at least 1"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer, not 0"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--primer", "{tmp}"], "--primer {tmp} is a folder; give one MIDI file"),
        (["--primer", "{tmp}/none.mid"], "--primer {tmp}/none.mid not found"),
        (
            ["--workdir", "{tmp}/a-file/qs"],
            "--workdir {tmp}/a-file/qs: {tmp}/a-file is a file, not a folder",
        ),
    ],
)
def test_quickstart_refuses_any_stages_flag_before_the_first_stage(
    flags, message, tmp_path, capsys
):
    (tmp_path / "a-file").write_text("not a folder")
    flags = [f.format(tmp=tmp_path) for f in flags]
    argv = flags if "--workdir" in flags else ["--workdir", str(tmp_path / "qs"), *flags]
    assert quickstart.main(argv) == 2
    out, err = capsys.readouterr()
    assert "[1/4]" not in out  # no stage started
    (line,) = err.strip().splitlines()
    assert line == f"lstm-composer quickstart: error: {message.format(tmp=tmp_path)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing made


# --------------------------------------------------------------------------- quiet by default


def test_native_log_lines_are_told_from_everything_else():
    from preprocessing import quiet

    for line in [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795998336.812148   14136 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
        "E0000 00:00:1795998445.693113   17395 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "I0000 00:00:1718392474.370713     806 cpu_client.cc:467] TfrtCpuClient created.",
        "W1114 09:32:22.280168 13509 tpu_hal.cc:448] Registered plugin",
    ]:
        assert quiet.is_native_log_line(line), line
    for line in [
        "F0000 00:00:1795998445.693113   17395 cuda_dnn.cc:52] Check failed: the reason a process dies",
        "lstm-composer generate: error: --output x is a folder",
        "Traceback (most recent call last):",
        "warning: --primer p.mid: skipped 1 of 10 tokens that are not in the model's vocabulary",
        "I love this piece",
    ]:
        assert not quiet.is_native_log_line(line), line


def test_verbose_flag_sets_the_environment_and_leaves_the_options_alone(monkeypatch):
    from preprocessing import options, quiet

    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")  # restored after the test
    assert not quiet.verbose()
    prep, beam_args = options.parse_args(["--output", "x"])
    assert "--default_sdk_harness_log_level=ERROR" in beam_args
    prep, beam_args = options.parse_args(["--output", "x", "--verbose"])
    assert quiet.verbose() and prep.output == "x" and not hasattr(prep, "verbose")
    assert not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args)


@pytest.mark.slow
def test_beam_worker_lines_are_hidden_unless_verbose(midi_corpus, tmp_path):
    """The DirectRunner's worker processes (2 here) log Beam's start-up notices; they reach the
    terminal only with --verbose, and the job's own output and files are the same either way."""
    runs = {}
    for name, extra in (("quiet", []), ("verbose", ["--verbose"])):
        runs[name] = lstm_composer_cli(
            "preprocess",
            "--input",
            str(midi_corpus["dir"]),
            "--output",
            str(tmp_path / name),
            "--sequence-length",
            "8",
            "--direct_num_workers",
            "2",
            *extra,
        )
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
        dead = (tmp_path / name / "dead_letter.jsonl").read_text().splitlines()
        # what the hidden lines said about bad files is kept
        assert len(dead) == len(midi_corpus["bad"])
    worker_lines = ("No semi_persistent_directory found", "Discarding unparseable args")
    assert not any(line in runs["quiet"].stderr for line in worker_lines), runs["quiet"].stderr
    assert "Worker: " not in runs["quiet"].stderr
    assert all(line in runs["verbose"].stderr for line in worker_lines), runs["verbose"].stderr[
        -3000:
    ]

    def same_run(stdout: str) -> str:  # every run has its own id
        return re.sub(r"\(run [0-9a-f]+\)", "(run)", stdout.replace("quiet", "verbose"))

    assert same_run(runs["quiet"].stdout) == same_run(runs["verbose"].stdout)


def test_quickstart_with_the_reference_network_trains_its_only_objective(tmp_path):
    """The preset trains every position; ``--model reference`` has the last one only, so the
    preset's objective gives way to it, and an explicit ``--objective sequence`` is refused."""
    from preprocessing import options
    from trainer import flags, generate_flags

    parsers = {
        "quickstart": quickstart.quickstart_parser(),
        "preprocess": options.build_parser(),
        "train": flags.build_parser(),
        "generate": generate_flags.build_parser(),
    }
    work = ["--workdir", str(tmp_path)]
    assert quickstart.plan_jobs(work, parsers).train.objective == "sequence"
    chosen = quickstart.plan_jobs([*work, "--model", "reference"], parsers).train
    assert (chosen.model, chosen.objective) == ("reference", "last")
    with pytest.raises(ValueError, match="--objective sequence needs --model fast"):
        quickstart.plan_jobs([*work, "--model", "reference", "--objective", "sequence"], parsers)
