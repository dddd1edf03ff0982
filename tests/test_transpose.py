"""``lstm-composer preprocess --transpose K`` on the DirectRunner, for both encodings: real MIDI
files (bad ones mixed in), real TFRecords read back with tf.data, every window accounted for.

What must hold: only training pieces are transposed, after the split by piece (no transposition of a
validation piece reaches train); a copy with a note outside the encoding's pitch range is dropped
and counted; the vocabulary holds what the copies add; ``--transpose 0`` writes today's output byte
for byte; and the held-out-style bad files are dead letters under both encodings while every good
file is kept.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import patterned_tokens, write_tokens_midi

from preprocessing import files, options, pipeline, reader, records, shards, windowing
from preprocessing.encodings import loader, registry

SEQ = 8
K = 2
VALIDATION_FRACTION = 0.3
TUNES = [f"tune_{index:02d}.mid" for index in range(6)]
# C0 (MIDI 12) and C8 (MIDI 108): the end of each encoding's transposable range
EDGE = "extremes.mid"
BAD = [
    "empty.mid",
    "random.mid",
    "truncated.mid",
    "renamed.mid",
    "more_tracks_declared.mid",
]
READ_WHOLE = "fewer_tracks_declared.mid"
"""The first tune with a header declaring one track fewer than it holds: read whole, and counted."""


def with_declared_tracks(data: bytes, declared: int) -> bytes:
    """The file with its header's track count replaced (the tracks themselves unchanged)."""
    return data[:10] + declared.to_bytes(2, "big") + data[12:]


@pytest.fixture(scope="module")
def augment_input(tmp_path_factory) -> Path:
    """Six tunes, a tune reaching both ends of the ranges, and the held-out-style bad files."""
    import random

    folder = tmp_path_factory.mktemp("transpose_input")
    for index, name in enumerate(TUNES):
        write_tokens_midi(folder / name, patterned_tokens(seed=200 + index, length=40))
    write_tokens_midi(folder / EDGE, ["C0", *patterned_tokens(seed=300, length=30), "C8"])
    good = (folder / TUNES[0]).read_bytes()
    declared = int.from_bytes(good[10:12], "big")
    assert declared == 2  # music21 writes a conductor track and the piano's
    (folder / "empty.mid").write_bytes(b"")
    (folder / "random.mid").write_bytes(bytes(random.Random(7).randrange(256) for _ in range(300)))
    (folder / "truncated.mid").write_bytes(good[: len(good) // 2])
    (folder / "renamed.mid").write_text("these are not the notes you are looking for\n")
    (folder / "more_tracks_declared.mid").write_bytes(with_declared_tracks(good, declared + 2))
    (folder / "fewer_tracks_declared.mid").write_bytes(with_declared_tracks(good, declared - 1))
    splits = {name: windowing.split_for(name, VALIDATION_FRACTION) for name in [*TUNES, EDGE]}
    assert splits[EDGE] == records.TRAIN and records.VALIDATION in splits.values(), splits
    return folder


def run(folder: Path, out: Path, *flags: str) -> pipeline.Outcome:
    return pipeline.run(
        [
            "--input",
            str(folder),
            "--output",
            str(out),
            "--sequence-length",
            str(SEQ),
            "--validation-fraction",
            str(VALIDATION_FRACTION),
            "--num-shards",
            "2",
            *flags,
        ]
    )


@pytest.fixture(scope="module", params=registry.NAMES)
def augmented(request, augment_input, tmp_path_factory):
    """One ``--transpose K`` run per encoding (the DirectRunner's default: worker processes), and
    the tokens each good file gives under that encoding, encoded here."""
    name = request.param
    out = tmp_path_factory.mktemp(f"transposed_{name}")
    outcome = run(augment_input, out, "--encoding", name, "--transpose", str(K))
    codec = loader.get(name)
    good = [*TUNES, EDGE, READ_WHOLE]
    tokens = {file: codec.encode((augment_input / file).read_bytes()) for file in good}
    return name, codec, out, outcome.manifest, tokens


def read_windows(out: Path, manifest: records.Manifest, split: str) -> Counter:
    paths = [str(out / name) for name in manifest.shards(split)]
    spec = records.parse_spec(manifest.sequence_length)
    dataset = tf.data.TFRecordDataset(paths).map(lambda s: tf.io.parse_single_example(s, spec))
    return Counter((tuple(ex["inputs"].numpy().tolist()), int(ex["target"])) for ex in dataset)


def windows_of(token_lists, index: dict[str, int]) -> Counter:
    found: Counter = Counter()
    for tokens in token_lists:
        # a token the vocabulary lacks gets id -1, which no record holds
        found.update(
            (tuple(i), t) for i, t in windowing.windows([index.get(t, -1) for t in tokens], SEQ, 1)
        )
    return found


def copies_of(codec, tokens: list[str]) -> list[list[str]]:
    moved = [codec.transpose(tokens, shift) for shift in windowing.semitone_shifts(K)]
    return [copy for copy in moved if copy is not None]


@pytest.mark.slow
def test_training_pieces_and_their_copies_are_exactly_the_train_windows(augmented):
    name, codec, out, manifest, tokens = augmented
    train = [
        t
        for file, t in tokens.items()
        if windowing.split_for(file, VALIDATION_FRACTION) == records.TRAIN
    ]
    validation = [
        t
        for file, t in tokens.items()
        if windowing.split_for(file, VALIDATION_FRACTION) != records.TRAIN
    ]
    copies = [copy for piece in train for copy in copies_of(codec, piece)]
    read_manifest, vocab = reader.read_output(str(out))  # the trainer's reader: every shard checked
    assert read_manifest == manifest and manifest.transpose == K
    # The vocabulary is computed after augmentation: it holds the copies' new tokens too.
    assert vocab == windowing.vocabulary(
        t for piece in [*train, *validation, *copies] for t in piece
    )
    assert set(vocab) > {t for piece in [*train, *validation] for t in piece}
    index = {token: i for i, token in enumerate(vocab)}
    assert read_windows(out, manifest, records.TRAIN) == windows_of([*train, *copies], index)
    assert read_windows(out, manifest, records.VALIDATION) == windows_of(validation, index)
    counts = manifest.counts
    augmented_windows = sum(windowing.window_count(len(copy), SEQ) for copy in copies)
    assert counts["windows_augmented"] == augmented_windows > 0
    assert counts["train_windows"] == augmented_windows + sum(
        windowing.window_count(len(p), SEQ) for p in train
    )
    assert (
        counts["train_pieces"] == len(train) and counts["validation_pieces"] == len(validation) >= 1
    )
    assert counts["tokens"] == sum(len(piece) for piece in tokens.values())  # the files' own tokens
    assert f"transposed copies  {len(copies):>10,}" in pipeline.summary(manifest, str(out))


@pytest.mark.slow
def test_no_transposition_of_a_validation_piece_is_in_train(augmented):
    """The windows that only a transposed validation piece would give are nowhere in train
    (windows that a training piece or its copies give too are the same music, not a leak: scale
    runs repeat)."""
    name, codec, out, manifest, tokens = augmented
    vocab = reader.read_vocab(str(out))
    index = {token: i for i, token in enumerate(vocab)}
    in_train = {
        file: windowing.split_for(file, VALIDATION_FRACTION) == records.TRAIN for file in tokens
    }
    from_train = windows_of(
        [c for f, p in tokens.items() if in_train[f] for c in [p, *copies_of(codec, p)]], index
    )
    only_validation = set(
        windows_of(
            [c for f, p in tokens.items() if not in_train[f] for c in copies_of(codec, p)], index
        )
    ) - set(from_train)
    assert len(only_validation) > 50  # the check has teeth
    assert not only_validation & set(read_windows(out, manifest, records.TRAIN))


@pytest.mark.slow
def test_a_copy_that_leaves_the_pitch_range_is_dropped_and_counted(augmented):
    name, codec, out, manifest, tokens = augmented
    # reference: C0 cannot go down (music21 names MIDI 0-11 as octave -1); REMI: C8 cannot go up.
    assert [
        codec.transpose(tokens[EDGE], shift) is None for shift in windowing.semitone_shifts(K)
    ] == ([True, True, False, False] if name == "reference" else [False, False, True, True])
    train_pieces = manifest.counts["train_pieces"]
    assert manifest.counts["transpositions_dropped"] == 2
    assert manifest.counts["transposed_pieces"] == 2 * K * train_pieces - 2


@pytest.mark.slow
def test_bad_files_are_dead_letters_and_every_good_file_is_kept(augmented, augment_input):
    name, codec, out, manifest, tokens = augmented
    letters = [
        json.loads(line) for line in (out / records.DEAD_LETTER_FILE).read_text().splitlines()
    ]
    reasons = {Path(entry["path"]).name: entry["error"] for entry in letters}
    assert sorted(reasons) == sorted(BAD) and all(Path(e["path"]).is_absolute() for e in letters)
    assert all(reason and "\n" not in reason for reason in reasons.values())
    assert reasons["empty.mid"] == "empty file (0 bytes)"
    assert reasons["renamed.mid"].startswith("not a MIDI file") and reasons[
        "random.mid"
    ].startswith("not a MIDI file")
    assert reasons["truncated.mid"].startswith("truncated")
    assert (
        reasons["more_tracks_declared.mid"]
        == "truncated: the header declares 4 tracks, the file holds 2"
    )
    assert tokens[READ_WHOLE] == tokens[TUNES[0]]  # every track read, as if declared
    assert manifest.counts["headers_undercounted"] == 1
    assert manifest.counts["files_failed"] == len(BAD) and manifest.counts["files_parsed"] == len(
        tokens
    )
    assert all(len(piece) > SEQ for piece in tokens.values())  # every good file gave windows


@pytest.mark.slow
def test_a_rerun_with_the_other_encoding_leaves_only_its_own_files(
    augmented, augment_input, tmp_path
):
    """REMI → reference: the old ``tokenizer.json`` goes; reference → REMI: the new one is there and
    matches the new manifest. Either way the folder holds exactly the new output's files."""
    name, _, out, _, _ = augmented
    other = next(n for n in registry.NAMES if n != name)
    folder = tmp_path / "out"
    shutil.copytree(out, folder)
    assert {p.name for p in folder.iterdir()} >= set(registry.by_name(name).saved_files)
    manifest = run(
        augment_input, folder, "--encoding", other, "--direct_running_mode", "in_memory"
    ).manifest
    assert registry.by_token_format(manifest.encoding).name == other
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            records.DEAD_LETTER_FILE,
            records.VOCAB_FILE,
            records.MANIFEST_FILE,
            *registry.by_name(other).saved_files,
            *manifest.shards(records.TRAIN),
            *manifest.shards(records.VALIDATION),
        ]
    )
    assert reader.read_output(str(folder))[0] == manifest


@pytest.mark.slow
def test_transpose_zero_writes_todays_output_byte_for_byte(
    training_midi_dir, records_dir, tmp_path
):
    """The same flags as the ``records_dir`` fixture, plus ``--transpose 0``: the same bytes."""
    outcome = pipeline.run(
        [
            "--input",
            str(training_midi_dir),
            "--output",
            str(tmp_path),
            "--sequence-length",
            "8",
            "--validation-fraction",
            "0.25",
            "--num-shards",
            "2",
            "--direct_running_mode",
            "in_memory",
            "--transpose",
            "0",
        ]
    )
    before = json.loads((records_dir / records.MANIFEST_FILE).read_text())
    after = json.loads((tmp_path / records.MANIFEST_FILE).read_text())
    assert "transpose" not in after and list(after["counts"]) == sorted(records.COUNT_KEYS)
    for document in (before, after):
        run_id = document.pop("run_id")
        for split in records.SPLITS:
            for shard in document[f"{split}_shards"]:
                shard["name"] = shard["name"].replace(run_id, "RUN")
    assert after == before  # shard hashes and sizes included
    assert (tmp_path / records.VOCAB_FILE).read_bytes() == (
        records_dir / records.VOCAB_FILE
    ).read_bytes()
    assert outcome.manifest.transpose == 0


def test_a_piece_keeps_its_window_keys_and_each_copy_has_its_own():
    import hashlib

    # The key a window always had (before --transpose existed), for shift 0.
    old = int.from_bytes(hashlib.blake2b(b"a/piece.mid\x003", digest_size=8).digest(), "big")
    assert shards.window_key("a/piece.mid", 3) == shards.window_key("a/piece.mid", 3, 0) == old
    keys = {
        shards.window_key("a/piece.mid", index, shift)
        for index in range(50)
        for shift in range(-12, 13)
    }
    assert len(keys) == 50 * 25


def test_shifts_and_copies_are_pure():
    assert windowing.semitone_shifts(0) == () and windowing.semitone_shifts(2) == (-2, -1, 1, 2)
    with pytest.raises(ValueError):
        windowing.semitone_shifts(windowing.MAX_TRANSPOSE + 1)
    copies, dropped = windowing.transposed_copies(
        ["a", "b"], (-1, 1, 2), lambda tokens, shift: None if shift == 2 else [f"{shift}"]
    )
    assert copies == [(-1, ["-1"]), (1, ["1"])] and dropped == 1


@pytest.mark.parametrize("value", ["-1", "13", "two"])
def test_a_bad_transpose_is_one_line(value, capsys):
    with pytest.raises(SystemExit) as caught:
        options.parse_args(["--output", "x", "--transpose", value])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("lstm-composer preprocess: error:") and "--transpose" in error
    assert options.parse_args(["--output", "x"])[0].transpose == 0


def test_a_manifest_before_transpose_reads_as_transpose_zero():
    manifest = records.Manifest(
        sequence_length=8,
        stride=1,
        vocab_size=3,
        vocab_hash="h",
        parts="all",
        compression="none",
        validation_fraction=0.1,
        counts={
            **dict.fromkeys(records.COUNT_KEYS, 1),
            "windows_augmented": 5,
            "transposed_pieces": 2,
            "transpositions_dropped": 1,
        },
        train_shards=(),
        validation_shards=(),
        run_id="abcd1234",
        transpose=3,
    )
    document = json.loads(records.manifest_to_json(manifest))
    assert document["transpose"] == 3 and document["counts"]["windows_augmented"] == 5
    assert records.manifest_from_json(json.dumps(document)) == manifest
    del document["transpose"]
    assert records.manifest_from_json(json.dumps(document)).transpose == 0
    plain = json.loads(
        records.manifest_to_json(records.Manifest(**{**manifest.__dict__, "transpose": 0}))
    )
    assert "transpose" not in plain and list(plain["counts"]) == sorted(records.COUNT_KEYS)


def test_every_encodings_saved_files_are_named_without_importing_it():
    for name in registry.NAMES:
        assert set(registry.by_name(name).saved_files) == set(loader.get(name).saved_files())


def test_a_saved_file_of_another_encoding_is_removed_after_the_manifest(tmp_path):
    for name in ("tokenizer.json", "train-old-00000-of-00001.tfrecord", "mine.txt"):
        (tmp_path / name).write_bytes(b"x")
    removed = files.remove_stale(str(tmp_path), [], [], replaced=["tokenizer.json"])
    assert sorted(Path(p).name for p in removed) == [
        "tokenizer.json",
        "train-old-00000-of-00001.tfrecord",
    ]
    (tmp_path / "tokenizer.json").write_bytes(b"mine")  # an output that writes it keeps it
    files.remove_stale(str(tmp_path), [], ["tokenizer.json"], replaced=["tokenizer.json"])
    assert (tmp_path / "tokenizer.json").read_bytes() == b"mine"
