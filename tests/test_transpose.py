"""``lstm-composer preprocess --transpose K`` on the DirectRunner, for both encodings, and the
trainer's transposition when it reads: real MIDI files (bad ones mixed in), real TFRecords read
back, every window accounted for.

What must hold: every piece is stored once; the vocabulary is closed under the training pieces'
moves (never a validation piece's); ``transpositions.json`` maps each id under each shift, checked
against the vocabulary; the trainer moves each training window by a drawn shift (never a validation
window), and a window a shift cannot move stays unmoved and is counted; ``--transpose 0`` writes
today's output byte for byte; and the held-out-style bad files are dead letters under both
encodings while every good file is kept.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import patterned_tokens, write_tokens_midi
from stored import spans_in, windows_in

from preprocessing import (
    files,
    options,
    pipeline,
    reader,
    records,
    run_summary,
    transpositions,
    windowing,
)
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


def windows_of(token_lists, index: dict[str, int]) -> Counter:
    found: Counter = Counter()
    for tokens in token_lists:
        # a token the vocabulary lacks gets id -1, which no record holds
        found.update(
            (tuple(i), t) for i, t in windowing.windows([index.get(t, -1) for t in tokens], SEQ, 1)
        )
    return found


def split_tokens(tokens: dict[str, list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """The good files' tokens, training pieces first, then validation pieces."""
    fate = {file: windowing.split_for(file, VALIDATION_FRACTION) for file in tokens}
    train = [t for file, t in tokens.items() if fate[file] == records.TRAIN]
    return train, [t for file, t in tokens.items() if fate[file] != records.TRAIN]


@pytest.mark.slow
def test_every_piece_is_stored_once_and_the_vocabulary_is_closed_under_the_shifts(augmented):
    name, codec, out, manifest, tokens = augmented
    train, validation = split_tokens(tokens)
    read_manifest, vocab = reader.read_output(str(out))  # the trainer's reader: every shard checked
    assert read_manifest == manifest and manifest.transpose == K
    shifts = transpositions.semitone_shifts(K)
    moved = transpositions.moved_tokens(
        transpositions.moves((t for piece in train for t in piece), shifts, codec.transpose_token)
    )
    # the training pieces' moves, never a validation piece's own
    assert vocab == windowing.vocabulary([*(t for p in [*train, *validation] for t in p), *moved])
    assert set(vocab) > {t for piece in [*train, *validation] for t in piece}
    index = {token: i for i, token in enumerate(vocab)}
    assert windows_in(out, manifest, records.TRAIN) == windows_of(train, index)
    assert windows_in(out, manifest, records.VALIDATION) == windows_of(validation, index)
    counts = manifest.counts
    assert counts["train_windows"] == sum(windowing.window_count(len(p), SEQ) for p in train)
    assert not set(records.AUGMENTATION_COUNT_KEYS) & set(counts)
    assert counts["tokens"] == sum(len(piece) for piece in tokens.values())
    # ids stored: about twice each token (spans of 2 x SEQ every SEQ), never once per shift
    stored = sum(len(span) for split in records.SPLITS for span in spans_in(out, manifest, split))
    assert stored <= 2 * counts["tokens"]
    # the table maps every training token under every shift, -1 where the encoding cannot
    table = json.loads((out / records.TRANSPOSITIONS_FILE).read_text())
    assert manifest.transposition_hash == transpositions.table_hash(
        (out / records.TRANSPOSITIONS_FILE).read_bytes()
    )
    assert table["shifts"] == list(shifts) and table["vocab_hash"] == manifest.vocab_hash
    for shift, row in zip(shifts, table["ids"]):
        for token in {t for piece in train for t in piece}:
            target = codec.transpose_token(token, shift)
            assert row[index[token]] == (-1 if target is None else index[target]), (shift, token)


@pytest.mark.slow
def test_the_trainer_moves_each_training_window_by_a_drawn_shift(augmented):
    """The training stream holds the stored windows, each moved by a shift of -K..K drawn anew
    (the shift a window cannot take leaves it unmoved); validation is read as stored."""
    name, codec, out, manifest, tokens = augmented
    from trainer import data as data_lib

    data = data_lib.load(str(out))
    train, _ = split_tokens(tokens)
    index = {token: i for i, token in enumerate(data.vocab)}
    by_shift: dict[int, set] = {}
    for shift in range(-K, K + 1):
        moved = [[codec.transpose_token(t, shift) for t in piece] for piece in train]
        by_shift[shift] = {
            (*w[0], w[1])
            for piece, original in zip(moved, train)
            for w in windowing.windows([index[t] if t is not None else -1 for t in piece], SEQ)
            if -1 not in (*w[0], w[1])
        }
    unmovable = {
        (*w[0], w[1])
        for piece in train
        for w in windowing.windows([index[t] for t in piece], SEQ)
        if any(
            codec.transpose_token(piece_token, shift) is None
            for shift in transpositions.semitone_shifts(K)
            for piece_token in (data.vocab[i] for i in (*w[0], w[1]))
        )
    }
    assert unmovable  # the edge piece's windows
    seen: Counter = Counter()
    stream = data_lib.dataset(data, records.TRAIN, 32, seed=3).take(60)
    for inputs, following in stream.as_numpy_iterator():
        for row in np.concatenate([inputs, following[:, -1:]], axis=1).tolist():
            shifts = [s for s, windows in by_shift.items() if tuple(row) in windows]
            assert shifts, row
            seen[shifts[0] if len(shifts) == 1 else "ambiguous"] += 1
    assert {s for s in seen if s != "ambiguous"} == set(range(-K, K + 1)), seen
    validation = data_lib.numpy_windows(data, records.VALIDATION)
    stored = windows_in(out, manifest, records.VALIDATION)
    assert (
        Counter((tuple(x), int(t)) for x, t in zip(validation[0].tolist(), validation[1].tolist()))
        == stored
    )
    # the same seed draws the same shifts
    again = data_lib.dataset(data, records.TRAIN, 32, seed=3).take(3)
    first = data_lib.dataset(data, records.TRAIN, 32, seed=3).take(3)
    for (a, _), (b, _) in zip(again.as_numpy_iterator(), first.as_numpy_iterator()):
        assert (a == b).all()


@pytest.mark.slow
def test_a_window_a_shift_cannot_move_is_counted(augmented):
    name, codec, out, manifest, tokens = augmented
    # reference: C0 cannot go down (music21 names MIDI 0-11 as octave -1); REMI: C8 cannot go up.
    assert [
        codec.transpose(tokens[EDGE], shift) is None for shift in transpositions.semitone_shifts(K)
    ] == ([True, True, False, False] if name == "reference" else [False, False, True, True])
    train, _ = split_tokens(tokens)
    expected = sum(
        (
            transpositions.refusals(
                p,
                SEQ,
                transpositions.moves(p, transpositions.semitone_shifts(K), codec.transpose_token),
            )
            for p in train
        ),
        Counter(),
    )
    counts = manifest.counts
    assert counts["windows_not_always_movable"] == expected["windows_not_always_movable"] > 0
    # the windows holding C0 (or C8), each under the two shifts that would push it out
    assert counts["shifts_refused"] == expected["shifts_refused"] >= 2
    line = run_summary.transposition_line(manifest)
    assert f"{counts['windows_not_always_movable']:,} windows hold a note" in line


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
    assert "transpose" not in after and "transposition_hash" not in after
    assert list(after["counts"]) == sorted(records.COUNT_KEYS + records.SPAN_COUNT_KEYS)
    assert not (tmp_path / records.TRANSPOSITIONS_FILE).exists()
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


def test_shifts_moves_refusals_and_the_table_are_pure():
    assert transpositions.semitone_shifts(0) == ()
    assert transpositions.semitone_shifts(2) == (-2, -1, 1, 2)
    with pytest.raises(ValueError):
        transpositions.semitone_shifts(transpositions.MAX_TRANSPOSE + 1)

    def move(token: str, shift: int) -> str | None:  # "x" stays, numbers move inside 0..9
        if token == "x":
            return token
        moved = int(token) + shift
        return str(moved) if 0 <= moved <= 9 else None

    moves = transpositions.moves(["0", "x", "9"], (-1, 1), move)
    assert moves == {-1: {"0": None, "x": "x", "9": "8"}, 1: {"0": "1", "x": "x", "9": None}}
    assert transpositions.moved_tokens(moves) == {"x", "1", "8"}
    # windows of 3 tokens in 0 1 x 5 5 9: [0 1 x] cannot go down, [5 5 9] nor [x 5 5]... up
    piece = ["0", "1", "x", "5", "5", "9"]
    refused = transpositions.refusals(piece, 2, transpositions.moves(piece, (-1, 1), move))
    assert refused == Counter(windows_not_always_movable=2, shifts_refused=2)
    no_window = transpositions.moves(["1", "2"], (-1, 1), move)
    assert transpositions.refusals(["1", "2"], 2, no_window) == Counter()
    vocab = ["0", "1", "2", "x"]
    assert transpositions.table(vocab, (-1, 1), move) == [[-1, 0, 1, 3], [1, 2, -1, 3]]


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda doc: doc.update(vocab_hash="other"), "maps the ids of another vocabulary"),
        (lambda doc: doc.update(shifts=[-1, 1], transpose=1), "not those of --transpose 2"),
        (lambda doc: doc["ids"][0].append(0), "maps 5 ids for shift -2, not the vocabulary's 4"),
        (lambda doc: doc["ids"][1].__setitem__(0, 7), "outside the vocabulary of 4 tokens"),
        (lambda doc: doc.pop("ids"), "is not {"),
        (lambda doc: doc["ids"].pop(), "holds 3 rows for 4 shifts"),
    ],
)
def test_a_table_that_does_not_match_is_named(edit, problem):
    doc = json.loads(transpositions.table_to_json(2, "h", [[0, 1, 2, 3]] * 4))
    assert transpositions.table_problem(doc, 2, "h", 4) is None
    edit(doc)
    assert problem in transpositions.table_problem(doc, 2, "h", 4)


@pytest.mark.slow
def test_a_missing_or_edited_table_stops_the_trainer_in_one_line(augmented, tmp_path):
    _, _, out, _, _ = augmented
    folder = tmp_path / "data"
    shutil.copytree(out, folder)
    path = folder / records.TRANSPOSITIONS_FILE
    text = path.read_text()
    messages = []
    for content in (None, text.replace("[", "[ ", 1), text.replace(",-1,", ",0,", 1)):
        if content is None:
            path.unlink()
        else:
            path.write_text(content)
        with pytest.raises(records.DataError) as caught:
            reader.read_output(str(folder))
        messages.append(str(caught.value))
    assert "not found: the manifest says --transpose 2" in messages[0]
    assert all("is not the table this run wrote" in m for m in messages[1:])
    assert all("\n" not in m and m.endswith(records.RERUN) for m in messages)


@pytest.mark.parametrize("value", ["-1", "13", "two"])
def test_a_bad_transpose_is_one_line(value, capsys):
    with pytest.raises(SystemExit) as caught:
        options.parse_args(["--output", "x", "--transpose", value])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("lstm-composer preprocess: error:") and "--transpose" in error
    assert options.parse_args(["--output", "x"])[0].transpose == 0


def test_manifests_with_stored_copies_and_with_a_table_both_read():
    fields = {
        "sequence_length": 8,
        "stride": 1,
        "vocab_size": 3,
        "vocab_hash": "h",
        "parts": "all",
        "compression": "none",
        "validation_fraction": 0.1,
        "train_shards": (),
        "validation_shards": (),
        "run_id": "abcd1234",
        "transpose": 3,
    }
    stored = records.Manifest(
        **fields,
        counts={
            **dict.fromkeys(records.COUNT_KEYS, 1),
            "windows_augmented": 5,
            "transposed_pieces": 2,
            "transpositions_dropped": 1,
        },
        format_version=2,
        layout=records.WINDOWS,
    )
    document = json.loads(records.manifest_to_json(stored))
    assert document["transpose"] == 3 and document["counts"]["windows_augmented"] == 5
    again = records.manifest_from_json(json.dumps(document))
    assert again == stored and not again.shifted_when_read  # its copies are in the records
    del document["transpose"]
    assert records.manifest_from_json(json.dumps(document)).transpose == 0
    read_time = records.Manifest(
        **{**fields, "stride": 8},
        counts={**dict.fromkeys(records.COUNT_KEYS, 1), "shifts_refused": 4},
        transposition_hash="t",
    )
    document = json.loads(records.manifest_to_json(read_time))
    assert set(document["counts"]) == {
        *records.COUNT_KEYS,
        *records.SPAN_COUNT_KEYS,
        *records.TRANSPOSITION_COUNT_KEYS,
    }
    assert records.manifest_from_json(json.dumps(document)).shifted_when_read


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
