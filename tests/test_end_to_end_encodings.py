"""Both encodings end to end from the command line: preprocess → train → generate → evaluate, on
real MIDI files with bad ones mixed in, and ``--parts first`` under REMI. Tiny on purpose: the
whole file is a few small DirectRunner runs and a few seconds of training each."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import scalars
from miditok import TokSequence
from symusic import Note, Score, Track

import lstm_composer
from lstm_composer import quickstart
from preprocessing import reader, records, windowing
from preprocessing.encodings import loader, registry

SEQ = 16
FRACTION = 0.3
TINY = [
    "--units",
    "16",
    "--layers",
    "1",
    "--dense-units",
    "16",
    "--embedding-dim",
    "8",
    "--seed",
    "3",
]
BAD = ("empty.mid", "random.mid", "truncated.mid", "text.mid")


def track(
    rng: np.random.Generator, pitches: range, durations: list[int], notes: int, program: int = 0
) -> Track:
    """A melody of ``notes`` notes, each as long as one of ``durations`` (ticks at 480 per
    quarter)."""
    melody, time = Track(program=program), 0
    for _ in range(notes):
        duration = int(rng.choice(durations))
        melody.notes.append(Note(time, duration, int(rng.choice(list(pitches))), 80))
        time += duration
    return melody


def midi(*tracks: Track) -> bytes:
    score = Score(480)
    score.tracks.extend(list(tracks))
    return score.dumps_midi()


def run(*argv: str) -> tuple[int, str, str]:
    """``lstm-composer ARGV`` in this process (TensorFlow is imported once): exit code, stdout,
    stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = lstm_composer.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory) -> tuple[Path, list[str]]:
    """Six good one-track files (four train, two validation, by the pipeline's own split) with
    notes of four lengths, and four bad files: empty, random bytes, truncated, text renamed .mid."""
    folder = tmp_path_factory.mktemp("e2e") / "midi"
    folder.mkdir()
    rng, good, wanted = np.random.default_rng(0), [], {records.TRAIN: 4, records.VALIDATION: 2}
    for index in range(100):
        name = f"tune_{index:02d}.mid"
        split = windowing.split_for(name, FRACTION)
        if wanted[split]:
            wanted[split] -= 1
            (folder / name).write_bytes(midi(track(rng, range(55, 80), [240, 480, 960], 40)))
            good.append(name)
    assert len(good) == 6
    (folder / "empty.mid").write_bytes(b"")
    (folder / "random.mid").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(400)))
    whole = (folder / good[0]).read_bytes()
    (folder / "truncated.mid").write_bytes(whole[: len(whole) // 2])
    (folder / "text.mid").write_text("MThd? no: a text file renamed .mid\n")
    return folder, good


@pytest.fixture(scope="module", params=registry.NAMES)
def chain(request, midi_folder, tmp_path_factory) -> dict:
    name, (folder, good) = request.param, midi_folder
    work = tmp_path_factory.mktemp(f"chain-{name}")
    data, job, piece = work / "data", work / "job", work / "music" / "piece.mid"
    runs = {
        "preprocess": run(
            "preprocess",
            "--input",
            str(folder),
            "--output",
            str(data),
            "--encoding",
            name,
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(FRACTION),
            "--num-shards",
            "1",
            "--direct_running_mode",
            "in_memory",
        ),
        "train": run(
            "train",
            "--data-dir",
            str(data),
            "--job-dir",
            str(job),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "8",
            "--batch-size",
            "16",
            "--learning-rate",
            "0.01",
            *TINY,
        ),
        "generate": run(
            "generate",
            "--model-dir",
            str(job / "model"),
            "--output",
            str(piece),
            "--length",
            "120",
            "--seed",
            "1",
        ),
        "evaluate": run(
            "evaluate",
            "--model-dir",
            str(job / "model"),
            "--data-dir",
            str(data),
            "--samples",
            "2",
            "--length",
            "60",
            "--continue",
            "--opening-bars",
            "2",
            "--output",
            str(work / "evaluation.json"),
        ),
    }
    return {
        "name": name,
        "encoding": loader.get(name),
        "data": data,
        "job": job,
        "piece": piece,
        "runs": runs,
        "work": work,
        "good": good,
        "folder": folder,
    }


@pytest.mark.slow
def test_every_stage_exits_0(chain):
    for stage, (code, _, err) in chain["runs"].items():
        assert code == 0, (chain["name"], stage, err)


@pytest.mark.slow
def test_bad_files_are_dead_letters_with_reasons_and_every_good_file_is_in(chain):
    letters = [
        json.loads(line) for line in (chain["data"] / "dead_letter.jsonl").read_text().splitlines()
    ]
    reasons = {Path(entry["path"]).name: entry["error"] for entry in letters}
    assert sorted(reasons) == sorted(BAD) and all(
        reason and "\n" not in reason for reason in reasons.values()
    )
    manifest, vocab = reader.read_output(str(chain["data"]))
    tokens = {
        name: chain["encoding"].encode((chain["folder"] / name).read_bytes())
        for name in chain["good"]
    }
    assert manifest.counts["files_parsed"] == len(chain["good"]) and manifest.counts[
        "files_failed"
    ] == len(BAD)
    assert manifest.counts["tokens"] == sum(map(len, tokens.values()))
    for split in records.SPLITS:
        expected = sum(
            max(0, len(t) - SEQ)
            for n, t in tokens.items()
            if windowing.split_for(n, FRACTION) == split
        )
        assert manifest.windows(split) == expected > 0, split
    assert set(vocab) == {t for piece in tokens.values() for t in piece}


@pytest.mark.slow
def test_the_model_folder_carries_the_encoding_and_the_piece_reads_back(chain):
    encoding, model = chain["encoding"], chain["job"] / "model"
    assert sorted(
        p.name for p in model.iterdir() if p.name in encoding.registration.saved_files
    ) == sorted(encoding.registration.saved_files)
    for file_name in encoding.registration.saved_files:
        assert (model / file_name).read_bytes() == (chain["data"] / file_name).read_bytes()
    tokens = json.loads(chain["piece"].with_suffix(".json").read_text())["tokens_text"]
    assert chain["piece"].with_suffix(".png").stat().st_size > 1000
    notes = [n for t in Score.from_midi(chain["piece"].read_bytes()).tracks for n in t.notes]
    if chain["name"] == "reference":
        assert encoding.encode(chain["piece"].read_bytes()) == tokens and len(tokens) == 120
    else:
        from miditok import TokSequence

        assert encoding.tokenizer.tokens_errors(TokSequence(tokens=tokens)) == 0
        assert len(notes) == sum(t.startswith("Pitch_") for t in tokens) > 10
        assert len({n.duration for n in notes}) > 1


@pytest.mark.slow
def test_evaluate_and_the_tensorboard_samples_work_for_the_encoding(chain):
    report = json.loads((chain["work"] / "evaluation.json").read_text())
    assert report["encoding"] == chain["name"] and "next token" in chain["runs"]["evaluate"][1]
    empty_beats = report["music"]["generated"]["empty_beat_rate"]
    assert (empty_beats is None) == (chain["name"] == "reference")
    logged = scalars(str(chain["job"] / "logs"))
    assert "music/pitch_class_entropy" in logged and ("music/empty_beat_rate" in logged) == (
        chain["name"] == "remi"
    )
    assert "warning" not in chain["runs"]["train"][1] + chain["runs"]["train"][2]


@pytest.mark.slow
def test_evaluate_continues_each_validation_piece_from_its_opening(chain):
    """``--continue --opening-bars 2``: each of the two validation pieces (about ten bars) is cut
    after its second bar and continued for as many tokens as it holds after them (at most 60);
    the composed and real continuations are measured piece by piece."""
    from trainer import continuation_measures
    from trainer import data as data_lib

    encoding, report = (
        chain["encoding"],
        json.loads((chain["work"] / "evaluation.json").read_text()),
    )
    data = data_lib.load(str(chain["data"]))
    pieces = [[data.vocab[i] for i in p] for p in data_lib.pieces(data, records.VALIDATION)]
    continued = report["continuations"]
    assert continued["opening_bars"] == 2 and continued["too_short"] == 0
    assert sorted(entry["piece"] for entry in continued["per_piece"]) == [0, 1]
    for entry in continued["per_piece"]:
        piece = pieces[entry["piece"]]
        opening = encoding.bar_starts(piece)[2]
        assert entry["opening_tokens"] == opening
        assert entry["continuation_tokens"] == min(len(piece) - opening, 60)
        composed = entry["composed_tokens"]
        assert len(composed) >= entry["continuation_tokens"] - 1  # REMI may drop a last Pitch
        if chain["name"] == "remi":  # under the grammar the whole piece decodes without error
            whole = TokSequence(tokens=piece[:opening] + composed)
            assert encoding.tokenizer.tokens_errors(whole) == 0
        for name in continuation_measures.OVERLAPS:
            assert entry[name] is None or 0 <= entry[name] <= 1
        assert set(entry["composed"]) == set(entry["real"]) == set(continuation_measures.MEASURES)
    summary = continued["summary"]
    assert summary["pieces"] == 2 and set(summary["overlaps"]) == set(
        continuation_measures.OVERLAPS
    )
    stdout = chain["runs"]["evaluate"][1]
    assert "continuations: 2 validation pieces primed with their first 2 bars" in stdout
    assert all(name in stdout for name in continuation_measures.MEASURES)


@pytest.mark.slow
def test_parts_first_under_remi_reads_the_first_track_only(tmp_path):
    """Two tracks that differ in range and rhythm: with --parts first only the upper one's
    pitches are tokens, in the data, the model's vocabulary and a primer read through the model's
    encoding."""
    rng, folder = np.random.default_rng(5), tmp_path / "midi"
    folder.mkdir()
    upper_range, lower_range = range(64, 77), range(36, 49)
    for index in range(3):
        upper = track(rng, upper_range, [240, 480], 30)
        lower = track(rng, lower_range, [960, 1920], 8, program=32)
        (folder / f"duet_{index}.mid").write_bytes(midi(upper, lower))
    data, job, piece = tmp_path / "data", tmp_path / "job", tmp_path / "piece.mid"
    assert (
        run(
            "preprocess",
            "--input",
            str(folder),
            "--output",
            str(data),
            "--encoding",
            "remi",
            "--parts",
            "first",
            "--sequence-length",
            "8",
            "--validation-fraction",
            "0",
            "--direct_running_mode",
            "in_memory",
        )[0]
        == 0
    )
    vocab = reader.read_vocab(str(data))
    played = {int(t[6:]) for t in vocab if t.startswith("Pitch_")}
    assert played and played <= set(upper_range)
    assert (
        run(
            "train",
            "--data-dir",
            str(data),
            "--job-dir",
            str(job),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "4",
            "--batch-size",
            "16",
            "--sample-every",
            "0",
            *TINY,
        )[0]
        == 0
    )
    code, out, err = run(
        "generate",
        "--model-dir",
        str(job / "model"),
        "--output",
        str(piece),
        "--length",
        "40",
        "--primer",
        str(folder / "duet_0.mid"),
        "--seed",
        "2",
    )
    # the primer's lower track never reaches the vocabulary
    assert code == 0 and "skipped" not in err, err
    from symusic import Score as Read

    pitches = {n.pitch for t in Read.from_midi(piece.read_bytes()).tracks for n in t.notes}
    assert pitches and pitches <= set(upper_range)


def test_the_quickstart_gives_remi_longer_windows_and_pieces(tmp_path):
    """``quickstart --encoding remi``: the REMI preset over the common one; a flag given still
    wins."""
    from preprocessing import options
    from trainer import flags, generate_flags

    parsers = {
        "quickstart": quickstart.quickstart_parser(),
        "preprocess": options.build_parser(),
        "train": flags.build_parser(),
        "generate": generate_flags.build_parser(),
    }
    base, remi = quickstart.PRESET, quickstart.ENCODING_PRESET["remi"]
    jobs = quickstart.plan_jobs(["--encoding", "remi", "--workdir", str(tmp_path)], parsers)
    assert (
        jobs.preprocess.encoding == "remi"
        and jobs.preprocess.sequence_length == remi["preprocess"]["sequence_length"]
    )
    assert (
        jobs.generate.length == remi["generate"]["length"]
        and jobs.generate.temperature == base["generate"]["temperature"]
    )
    assert jobs.train.units == base["train"]["units"]
    reference = quickstart.plan_jobs(["--workdir", str(tmp_path)], parsers)
    assert reference.preprocess.sequence_length == base["preprocess"]["sequence_length"]
    assert reference.generate.length == base["generate"]["length"]
    mine = quickstart.plan_jobs(
        ["--encoding", "remi", "--sequence-length", "24", "--workdir", str(tmp_path)], parsers
    )
    assert mine.preprocess.sequence_length == 24
    assert (jobs.preprocess.stride, jobs.train.objective) == (
        remi["preprocess"]["stride"],
        base["train"]["objective"],
    )
    # argparse wraps the epilog at spaces and hyphens: compare without whitespace
    shown = "".join(quickstart.quickstart_parser().format_help().split())
    assert "".join(f"with --encoding remi: {quickstart.describe_preset(remi)}".split()) in shown
