"""``lstm-composer preprocess --encoding remi --bpe-vocab N`` on the DirectRunner (in memory), on
real MIDI files: learned from training pieces only, deterministic, bounded, refused when it cannot
be, read back checked, transposed; then trained on, composed from and evaluated."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from helpers import melody_midi
from miditok import TokSequence
from stored import windows_in

import lstm_composer
from preprocessing import pipeline, reader, records, run_summary, windowing
from preprocessing.encodings import remi_bpe
from preprocessing.encodings.remi import TOKENIZER_FILE, RemiEncoding
from preprocessing.encodings.remi_grammar import SEPARATOR, base_tokens
from preprocessing.options import BPE_SAMPLE_TOKENS

SEQ = 16
FRACTION = 0.3
ASKED = 250
BASE = RemiEncoding()


def cli(*argv: str) -> tuple[int, str, str]:
    """``lstm-composer ARGV`` in this process (a flag refused: argparse's exit): exit code,
    stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = lstm_composer.main(list(argv))
        except SystemExit as exc:  # argparse's refusal
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def preprocess_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--input", str(folder), "--output", str(out), "--encoding", "remi"),
        *("--sequence-length", str(SEQ), "--validation-fraction", str(FRACTION)),
        *("--num-shards", "2", "--direct_running_mode", "in_memory", *extra),
    ]


def run(folder: Path, out: Path, *extra: str) -> records.Manifest:
    outcome = pipeline.run(preprocess_argv(folder, out, *extra))
    assert outcome.manifest is not None, outcome
    return outcome.manifest


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Ten one-track pieces, about 300 REMI tokens each."""
    folder = tmp_path_factory.mktemp("bpe") / "midi"
    folder.mkdir()
    for index in range(10):
        (folder / f"tune_{index:02d}.mid").write_bytes(melody_midi(seed=index, notes=80))
    return folder


@pytest.fixture(scope="module")
def base(folder) -> dict[str, list[str]]:
    """Every file's base REMI tokens, encoded here."""
    return {path.name: BASE.encode(path.read_bytes()) for path in sorted(folder.iterdir())}


def training(base: dict[str, list[str]]) -> list[str]:
    """The training pieces' names, in the order the sample takes them (smallest key digest)."""
    names = [n for n in base if windowing.split_for(n, FRACTION) == records.TRAIN]
    return sorted(names, key=windowing.key_digest)


@pytest.fixture(scope="module")
def bpe_run(folder, tmp_path_factory) -> tuple[Path, records.Manifest]:
    out = tmp_path_factory.mktemp("out_bpe")
    return out, run(folder, out, "--bpe-vocab", str(ASKED))


@pytest.mark.slow
def test_learned_from_the_training_pieces_and_every_piece_is_written_with_it(base, bpe_run):
    out, manifest = bpe_run
    names = training(base)
    assert 3 <= len(names) < len(base)  # some pieces were held out, and none of them was learned
    expected = RemiEncoding.learn([base[n] for n in names], ASKED)
    assert (out / TOKENIZER_FILE).read_bytes() == expected.saved_files()[TOKENIZER_FILE]
    assert manifest.bpe_vocab == {
        "asked": ASKED,
        "learned": ASKED,
        "sample_pieces": len(names),
        "sample_tokens": sum(len(base[n]) for n in names),
        "sample_bound": BPE_SAMPLE_TOKENS,
        "learned_hash": expected.learned_hash,
    }
    assert manifest.encoding_config_hash == expected.config_hash != BASE.config_hash
    written = {name: expected.apply_learned(tokens) for name, tokens in base.items()}
    vocab = reader.read_vocab(str(out))
    used = {t for tokens in written.values() for t in tokens}
    assert vocab == sorted(used | set(base_tokens(used))) and any(SEPARATOR in t for t in vocab)
    index = {token: i for i, token in enumerate(vocab)}
    for split in records.SPLITS:
        expected_windows = Counter(
            (tuple(inputs), target)
            for name, tokens in written.items()
            if windowing.split_for(name, FRACTION) == split
            for inputs, target in windowing.windows([index[t] for t in tokens], SEQ)
        )
        assert windows_in(out, manifest, split) == expected_windows and expected_windows
    counts = manifest.counts
    assert counts["base_tokens"] == sum(map(len, base.values()))
    assert counts["tokens"] == sum(map(len, written.values())) < 0.8 * counts["base_tokens"]
    assert reader.read_output(str(out))[0] == manifest  # the trainer's reader accepts it
    assert "learned vocabulary" in run_summary.summary(manifest, str(out))


@pytest.mark.slow
def test_the_same_files_give_the_same_bytes_and_held_out_pieces_never_count(
    folder, base, bpe_run, tmp_path
):
    out, manifest = bpe_run
    again = run(folder, tmp_path / "again", "--bpe-vocab", str(ASKED))
    for name in (TOKENIZER_FILE, records.VOCAB_FILE):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    for split in records.SPLITS:
        shards = [(s.records, s.size, s.sha256) for s in manifest.shard_entries(split)]
        assert [(s.records, s.size, s.sha256) for s in again.shard_entries(split)] == shards
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    held_out = [n for n in base if n not in training(base)]
    for offset, name in enumerate(held_out):  # other music under the held-out names
        (other / name).write_bytes(melody_midi(seed=100 + offset, notes=90))
    changed = run(other, tmp_path / "changed", "--bpe-vocab", str(ASKED))
    assert changed.bpe_vocab == manifest.bpe_vocab
    assert (tmp_path / "changed" / TOKENIZER_FILE).read_bytes() == (
        out / TOKENIZER_FILE
    ).read_bytes()
    assert changed.vocab_hash != manifest.vocab_hash  # the held-out pieces are written with it


@pytest.mark.slow
def test_without_the_flag_nothing_changes(folder, tmp_path):
    manifest = run(folder, tmp_path / "plain")
    document = json.loads((tmp_path / "plain" / records.MANIFEST_FILE).read_text())
    assert "bpe_vocab" not in document and "base_tokens" not in document["counts"]
    assert manifest.encoding_config_hash == BASE.config_hash
    saved = (tmp_path / "plain" / TOKENIZER_FILE).read_bytes()
    assert saved == BASE.saved_files()[TOKENIZER_FILE]
    assert not any(SEPARATOR in t for t in reader.read_vocab(str(tmp_path / "plain")))


@pytest.mark.slow
def test_the_sample_stops_at_its_token_bound(folder, base, tmp_path):
    bound, asked = 500, 180
    manifest = run(
        folder, tmp_path / "out", "--bpe-vocab", str(asked), "--bpe-sample-tokens", str(bound)
    )
    sample, total = [], 0
    for name in training(base):
        if total >= bound:
            break
        sample.append(base[name][: bound - total])
        total += len(sample[-1])
    assert len(sample) < len(training(base))  # the bound left pieces out
    assert manifest.bpe_vocab["sample_pieces"] == len(sample)
    assert manifest.bpe_vocab["sample_tokens"] == bound == manifest.bpe_vocab["sample_bound"]
    expected = RemiEncoding.learn(sample, asked).saved_files()[TOKENIZER_FILE]
    assert (tmp_path / "out" / TOKENIZER_FILE).read_bytes() == expected


@pytest.mark.slow
def test_a_vocabulary_the_pieces_cannot_support_publishes_nothing(folder, bpe_run, tmp_path):
    finished = tmp_path / "out"
    shutil.copytree(bpe_run[0], finished)
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    code, stdout, stderr = cli(
        "preprocess", *preprocess_argv(folder, finished, "--bpe-vocab", "50000")
    )
    assert code == 1 and "preprocessing failed: nothing was published" in stdout
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("lstm-composer preprocess: error: --bpe-vocab 50,000 is more than")
    reports = [p for p in finished.iterdir() if p.name.startswith("failed-run-")]
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    learned = report["manifest"]["bpe_vocab"]["learned"]
    assert ASKED < learned < 50_000 and f"ask for at most {learned:,}" in line
    assert report["reason"] in line and "nothing was published" in line
    after = {p.name: p.read_bytes() for p in finished.iterdir() if p != reports[0]}
    assert after == before  # the finished output is as it was, and no shard of this run is left
    assert reader.read_output(str(finished))[0] == bpe_run[1]


@pytest.mark.slow
def test_transposition_moves_learned_tokens_as_the_music(folder, base, tmp_path):
    manifest = run(folder, tmp_path / "out", "--bpe-vocab", str(ASKED), "--transpose", "2")
    out = tmp_path / "out"
    vocab = reader.read_vocab(str(out))
    rows = reader.read_transpositions(str(out), manifest)
    shifts = (-2, -1, 1, 2)
    learned = RemiEncoding.from_saved(lambda name: (out / name).read_bytes())
    index, moved_tokens = {t: i for i, t in enumerate(vocab)}, set()
    for name in training(base):
        ids = [index[t] for t in learned.apply_learned(base[name])]
        for shift, row in zip(shifts, rows):
            moved = BASE.transpose(base[name], shift)
            if moved is None:
                continue
            written = [vocab[row[i]] for i in ids]
            assert base_tokens(written) == moved  # exactly the music moved
            moved_tokens |= set(written)
    strings = set(remi_bpe.token_strings(learned.tokenizer))
    assert moved_tokens <= set(vocab) and moved_tokens - strings  # some are none MidiTok learned
    assert manifest.bpe_vocab["learned"] == ASKED and manifest.transpose == 2


def damaged_copy(source: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
    shutil.copytree(source, copy)
    document = json.loads((copy / TOKENIZER_FILE).read_text())
    edit(document)
    (copy / TOKENIZER_FILE).write_text(json.dumps(document))
    return copy


def refusal(folder: Path, shards: bool = True) -> str:
    with pytest.raises(records.DataError) as caught:
        reader.read_output(str(folder), shards=shards)
    message = str(caught.value)
    assert "\n" not in message and TOKENIZER_FILE in message
    return message


@pytest.mark.slow
def test_a_tokenizer_whose_learned_part_was_edited_or_removed_is_refused(bpe_run, tmp_path):
    out = bpe_run[0]

    def remove_all(document):
        for key in ("_vocab_base", "_model", "_vocab_base_byte_to_token"):
            del document[key]

    def drop_a_merge(document):
        model = json.loads(document["_model"])
        model["model"]["merges"].pop()
        document["_model"] = json.dumps(model)

    removed = damaged_copy(out, tmp_path, remove_all)
    message = refusal(removed)
    assert (
        f"has no learned vocabulary, but the data was written with --bpe-vocab {ASKED}" in message
    )
    assert "run the preprocessing job again" in message
    assert "has no learned vocabulary" in refusal(removed, shards=False)  # a model folder too
    message = refusal(damaged_copy(out, tmp_path, drop_a_merge))
    assert "learned vocabulary does not match the manifest" in message
    message = refusal(damaged_copy(out, tmp_path, lambda d: d.pop("_model")))
    assert "learned vocabulary is incomplete (it lacks _model)" in message
    unrecorded = damaged_copy(out, tmp_path, lambda d: None)
    document = json.loads((unrecorded / records.MANIFEST_FILE).read_text())
    del document["bpe_vocab"]
    (unrecorded / records.MANIFEST_FILE).write_text(json.dumps(document))
    assert "holds a learned vocabulary, but the data was written without" in refusal(unrecorded)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bpe-vocab", "300"], "--encoding reference has none to learn"),
        (["--encoding", "remi", "--bpe-vocab", "154"], "base vocabulary of 154 tokens"),
        (["--encoding", "remi", "--bpe-vocab", "300", "--bpe-sample-tokens", "0"], "at least 1"),
    ],
)
def test_bad_flags_are_refused_in_one_line_before_any_work(flags, message, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = cli("preprocess", "--input", str(tmp_path), "--output", str(out), *flags)
    assert code == 2 and message in stderr.strip().splitlines()[-1]
    assert not out.exists()


# --------------------------------------------------------------------------- trained on, composed


@pytest.mark.slow
def test_a_model_trained_on_learned_tokens_composes_pieces_that_decode_whole(
    folder, bpe_run, tmp_path
):
    data, job = bpe_run[0], tmp_path / "job"
    tiny = ["--units", "16", "--layers", "1", "--dense-units", "16", "--embedding-dim", "8"]
    train = cli(
        *("train", "--data-dir", str(data), "--job-dir", str(job), "--epochs", "1"),
        *("--steps-per-epoch", "8", "--batch-size", "16", "--seed", "3", *tiny),
    )
    assert train[0] == 0, train[2]
    assert (job / "model" / TOKENIZER_FILE).read_bytes() == (data / TOKENIZER_FILE).read_bytes()
    primer, piece = folder / "tune_00.mid", tmp_path / "piece.mid"
    for seed in ("1", "2"):
        code, _, err = cli(
            *("generate", "--model-dir", str(job / "model"), "--output", str(piece)),
            *("--length", "150", "--seed", seed, "--primer", str(primer)),
        )
        assert code == 0, err
        tokens = json.loads(piece.with_suffix(".json").read_text())["tokens_text"]
        expanded = base_tokens(tokens)
        assert BASE.tokenizer.tokens_errors(TokSequence(tokens=expanded)) == 0
        assert any(SEPARATOR in t for t in tokens)
        pitches = sum(t.startswith("Pitch_") for t in expanded)
        assert len(BASE.note_events(tokens)) == pitches > 10
        assert BASE.encode(piece.read_bytes()) == BASE.encode(BASE.decode(expanded))
    code, _, err = cli(
        *("evaluate", "--model-dir", str(job / "model"), "--data-dir", str(data)),
        *("--samples", "2", "--length", "60", "--output", str(tmp_path / "evaluation.json")),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert (
        report["encoding"] == "remi" and report["music"]["generated"]["empty_beat_rate"] is not None
    )
