"""``lstm-composer preprocess --encoding remi`` on the DirectRunner: real MIDI files, bad ones
mixed in."""

from __future__ import annotations

import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import pytest
from stored import windows_in

from preprocessing import pipeline, reader, records, run_summary, windowing
from preprocessing.encodings import loader
from preprocessing.encodings.remi import TOKENIZER_FILE, RemiEncoding

SEQ = 8
VALIDATION_FRACTION = 0.3


def read_windows(out: Path, manifest: records.Manifest, split: str) -> Counter:
    return windows_in(out, manifest, split)


def velocity_129_midi() -> bytes:
    """A well-formed MIDI container whose one note-on has velocity 129: only the parser can tell."""
    track = bytes([0, 0x90, 0x3C, 0x81, 0x60, 0x80, 0x3C, 0x40, 0, 0xFF, 0x2F, 0])
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, 480)
        + b"MTrk"
        + struct.pack(">I", len(track))
        + track
    )


@pytest.fixture(scope="module")
def remi_input(midi_corpus, tmp_path_factory) -> Path:
    """The shared corpus (good, short, empty and corrupt files) plus a file that symusic refuses."""
    folder = tmp_path_factory.mktemp("remi_input") / "midi"
    shutil.copytree(midi_corpus["dir"], folder)
    (folder / "velocity.mid").write_bytes(velocity_129_midi())
    return folder


@pytest.fixture(scope="module")
def remi_run(remi_input, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_remi")
    outcome = pipeline.run(
        [
            "--input",
            str(remi_input),
            "--output",
            str(out),
            "--encoding",
            "remi",
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(VALIDATION_FRACTION),
            "--num-shards",
            "2",
        ]
    )
    return out, outcome.manifest


@pytest.fixture(scope="module")
def remi_tokens(midi_corpus) -> dict[str, list[str]]:
    """What REMI gives for every file that parses, encoded here in this process."""
    remi = RemiEncoding()
    folder = midi_corpus["dir"]
    return {name: remi.encode((folder / name).read_bytes()) for name in midi_corpus["tokens"]}


@pytest.mark.slow
def test_the_manifest_records_remi_and_the_tokenizer_lies_beside_the_vocabulary(remi_run):
    out, manifest = remi_run
    remi = RemiEncoding()
    assert manifest.encoding == RemiEncoding.registration.token_format == "miditok-remi-v1"
    assert (
        manifest.encoding_config_hash == remi.config_hash
        and manifest.encoding_versions == remi.versions
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "vocab.json",
            "manifest.json",
            "dead_letter.jsonl",
            TOKENIZER_FILE,
            *manifest.shards("train"),
            *manifest.shards("validation"),
        ]
    )
    assert (out / TOKENIZER_FILE).read_bytes() == remi.saved_files()[TOKENIZER_FILE]
    read_manifest, vocab = reader.read_output(str(out))  # the trainer's reader accepts it
    assert read_manifest == manifest
    assert {"Bar_None", "Pitch_60"} <= set(vocab) and all(
        token.split("_")[0] in {"Bar", "Position", "Pitch", "Duration", "Rest"} for token in vocab
    )
    assert "encoding remi" in run_summary.summary(manifest, str(out))


@pytest.mark.slow
def test_remi_windows_are_the_files_tokens_and_decode_back(midi_corpus, remi_run, remi_tokens):
    out, manifest = remi_run
    vocab = reader.read_vocab(str(out))
    index = {token: i for i, token in enumerate(vocab)}
    assert vocab == windowing.vocabulary(t for tokens in remi_tokens.values() for t in tokens)
    for split in records.SPLITS:
        expected = Counter()
        for name, tokens in remi_tokens.items():
            if windowing.split_for(name, VALIDATION_FRACTION) == split:
                ids = [index[t] for t in tokens]
                expected.update((tuple(i), t) for i, t in windowing.windows(ids, SEQ, 1))
        assert read_windows(out, manifest, split) == expected and expected
    saved = loader.load(
        "remi", lambda name: (out / name).read_bytes(), manifest.encoding_config_hash
    )
    tokens = remi_tokens["piece_1.mid"]
    assert saved.encode(saved.decode(tokens)) == tokens


@pytest.mark.slow
def test_bad_files_under_remi_are_dead_letters_with_symusics_reasons(
    midi_corpus, remi_run, remi_tokens
):
    out, manifest = remi_run
    letters = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    reasons = {Path(entry["path"]).name: entry["error"] for entry in letters}
    assert sorted(reasons) == sorted([*midi_corpus["bad"], "velocity.mid"])
    assert all(reason and "\n" not in reason for reason in reasons.values())
    assert reasons["velocity.mid"] == "symusic could not parse it: RuntimeError: Get velocity=129"
    assert reasons["empty.mid"] == "empty file (0 bytes)" and reasons["garbage.MID"].startswith(
        "not a MIDI file"
    )
    counts = manifest.counts
    assert counts["files_failed"] == len(reasons) and counts["files_parsed"] == len(remi_tokens)
    assert counts["tokens"] == sum(len(tokens) for tokens in remi_tokens.values())
    assert counts["pieces_empty"] == sum(1 for tokens in remi_tokens.values() if not tokens) >= 1


def copy_output(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


@pytest.mark.slow
def test_a_missing_tokenizer_is_refused_in_one_line(remi_run, tmp_path):
    copy = copy_output(remi_run[0], tmp_path)
    (copy / TOKENIZER_FILE).unlink()
    with pytest.raises(records.DataError) as caught:
        reader.read_output(str(copy))
    message = str(caught.value)
    assert "\n" not in message and TOKENIZER_FILE in message and "not found" in message


@pytest.mark.slow
def test_a_tokenizer_of_another_configuration_is_refused_in_one_line(remi_run, tmp_path):
    copy = copy_output(remi_run[0], tmp_path)
    document = json.loads((copy / TOKENIZER_FILE).read_text())
    document["config"]["beat_res"] = {"0_4": 8, "4_12": 4}
    (copy / TOKENIZER_FILE).write_text(json.dumps(document))
    with pytest.raises(records.DataError) as caught:
        reader.read_output(str(copy))
    message = str(caught.value)
    assert (
        "\n" not in message
        and "configuration hash" in message
        and remi_run[1].encoding_config_hash in message
    )
    (copy / TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(records.DataError) as caught:
        reader.read_output(str(copy))
    assert "\n" not in str(caught.value) and TOKENIZER_FILE in str(caught.value)


def test_the_encoding_flag_and_its_parse_functions():
    from preprocessing import options, parse_files

    assert options.parse_args(["--output", "x"])[0].encoding == "reference"
    assert options.parse_args(["--output", "x", "--encoding", "remi"])[0].encoding == "remi"
    remi_parse = "preprocessing.encodings.remi:tokens_from_midi_bytes"
    assert parse_files.ParseMidi("all", "", 5.0, "remi").function == remi_parse
    reference_parse = "preprocessing.encodings.reference:tokens_from_midi_bytes"
    assert parse_files.ParseMidi("all", "", 5.0).function == reference_parse
    with pytest.raises(SystemExit):
        options.parse_args(["--output", "x", "--encoding", "abc"])


def test_the_beam_workers_modules_do_not_import_miditok():
    """As music21: only the parse child of ``--encoding remi`` imports MidiTok and symusic."""
    import subprocess
    import sys

    code = (
        "import sys, preprocessing.transforms, preprocessing.parse_files, preprocessing.budgeted_pool, "
        "preprocessing.direct_runner, preprocessing.budgeted_child, preprocessing.learn_vocabulary, "
        "preprocessing.writing; "
        "bad = {'miditok', 'symusic', 'music21'} & set(sys.modules); assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr


def test_a_manifest_written_before_the_encoding_fields_still_reads():
    """Format version 2 without ``encoding_config_hash`` / ``encoding_versions``: read with their
    defaults."""
    manifest = records.Manifest(
        sequence_length=8,
        stride=1,
        vocab_size=3,
        vocab_hash="h",
        parts="all",
        compression="none",
        validation_fraction=0.1,
        counts=dict.fromkeys(records.COUNT_KEYS, 0),
        train_shards=(),
        validation_shards=(),
        run_id="abcd1234",
        encoding_config_hash="x",
        encoding_versions={"music21": "1"},
        format_version=2,
        layout=records.WINDOWS,
    )
    document = json.loads(records.manifest_to_json(manifest))
    assert records.manifest_from_json(json.dumps(document)) == manifest
    for field in records.OPTIONAL_FIELDS:
        document.pop(field, None)  # ``transpose`` is written only when it is not 0
    old = records.manifest_from_json(json.dumps(document))
    assert (old.encoding, old.encoding_config_hash, old.encoding_versions) == (
        records.ENCODING,
        "",
        {},
    )
    document["encoding"] = "miditok-remi-v1"
    assert records.manifest_from_json(json.dumps(document)).encoding == "miditok-remi-v1"
    document["encoding"] = "something-else-v9"
    with pytest.raises(records.DataError, match="does not read"):
        records.manifest_from_json(json.dumps(document))


@pytest.mark.slow
def test_the_time_budget_holds_under_remi(midi_corpus, tmp_path):
    """A valid file MidiTok needs seconds for (100,000 notes) is stopped at the budget; the good
    file is kept."""
    from symusic import Note, Score, Track

    score, track = Score(480), Track(program=0)
    for index in range(100_000):
        track.notes.append(Note(index * 60, 60, 40 + (index * 7) % 48, 80))
    score.tracks.append(track)
    folder = tmp_path / "midi"
    folder.mkdir()
    (folder / "huge.mid").write_bytes(score.dumps_midi())
    shutil.copy(midi_corpus["dir"] / "piece_3.mid", folder / "piece_3.mid")
    out = tmp_path / "out"
    manifest = pipeline.run(
        [
            "--input",
            str(folder),
            "--output",
            str(out),
            "--encoding",
            "remi",
            "--sequence-length",
            str(SEQ),
            "--max-seconds-per-file",
            "0.5",
            "--direct_running_mode",
            "in_memory",
        ]
    ).manifest
    letters = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert [(Path(entry["path"]).name, entry["error"]) for entry in letters] == [
        ("huge.mid", "took more than --max-seconds-per-file 0.5 s of CPU time to parse; stopped")
    ]
    assert manifest.counts["files_parsed"] == 1 and manifest.counts["tokens"] > SEQ
