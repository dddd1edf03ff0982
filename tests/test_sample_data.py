"""The embedded default dataset: a fixed selection, rendered deterministically, reused only when
complete.

Fast tests only: they render two short chorales of the selection (about a second each), never the
whole dataset. Everything is real music21 rendering and parsing; nothing is mocked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from music21 import midi

from preprocessing import sample_data
from preprocessing.encodings import reference

# Two short four-voice chorales from the default selection: quick to render, four parts each.
TINY = ("bach/bwv66.6.mxl", "bach/bwv269.mxl")


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_identity(directory: str | Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) per file: a re-render replaces the file by rename, so both would change."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(Path(directory).iterdir())
    }


def _tracks_with_notes(path: str | Path) -> int:
    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    return sum(1 for track in mf.tracks if track.hasNotes())


def test_selection_resolves_to_existing_corpus_files():
    pieces = sample_data.PIECES
    assert len(pieces) == len(set(pieces)) > 50
    for piece in TINY:
        assert piece in pieces
    for piece in pieces:
        assert sample_data.corpus_file(piece).is_file(), piece
    names = [sample_data.output_name(p) for p in pieces]
    assert len(set(names)) == len(names)
    assert all(n.endswith(".mid") and "/" not in n and " " not in n for n in names)
    composers = {p.split("/")[0] for p in pieces}
    assert {"bach", "palestrina", "monteverdi", "mozart", "haydn", "joplin"} <= composers


def test_default_dir_is_named_after_the_selection():
    assert Path(sample_data.DEFAULT_DIR).name.endswith(sample_data.selection_digest())
    assert sample_data.selection_digest(TINY) != sample_data.selection_digest()
    assert sample_data.build_parser().parse_args([]).output == sample_data.DEFAULT_DIR


def test_output_names_are_descriptive():
    assert sample_data.output_name("bach/bwv66.6.mxl") == "bach_bwv66.6.mid"
    assert (
        sample_data.output_name("trecento/PMFC_06_Piero_1-All_onbra d_un perlato.xml")
        == "trecento_PMFC_06_Piero_1-All_onbra-d_un-perlato.mid"
    )


def test_render_is_deterministic(tmp_path):
    first = sample_data.render_piece(TINY[0], tmp_path / "a")
    second = sample_data.render_piece(TINY[0], tmp_path / "b")
    assert Path(first).name == Path(second).name == "bach_bwv66.6.mid"
    assert _sha(first) == _sha(second)
    # no temp files left
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "bach_bwv66.6.mid"]


def test_rendered_midi_has_a_track_per_part_and_reads_back_as_tokens(tmp_path):
    path = sample_data.render_piece(TINY[0], tmp_path)
    assert _tracks_with_notes(path) == 4  # soprano, alto, tenor, bass
    data = Path(path).read_bytes()
    assert len(reference.parse_midi_bytes(data).parts) >= 4
    tokens = reference.tokens_from_midi_bytes(data, parts="all")
    first_part_only = reference.tokens_from_midi_bytes(data, parts="first")
    assert tokens
    # Four voices sounding together merge into chord tokens; one voice alone has none.
    assert sum("." in t for t in tokens) > len(tokens) / 2
    assert not any("." in t for t in first_part_only)


def test_a_piece_that_cannot_render_raises(tmp_path):
    with pytest.raises(RuntimeError, match="no_such_piece"):
        sample_data.render_piece("bach/no_such_piece.mxl", tmp_path)
    with pytest.raises(FileNotFoundError, match="no_such_piece"):
        sample_data.ensure_dataset(
            str(tmp_path / "d"), workers=1, pieces=(TINY[0], "bach/no_such_piece.mxl")
        )
    # A real corpus piece that music21 cannot write as MIDI (its repeats cannot be expanded): the
    # error comes back from the worker process and names the piece; no index marks the folder done.
    broken = "mozart/k458/movement2.mxl"
    with pytest.raises(RuntimeError, match="k458"):
        sample_data.ensure_dataset(str(tmp_path / "e"), workers=2, pieces=(TINY[0], broken))
    assert not (tmp_path / "e" / sample_data.INDEX_NAME).exists()
    assert not sample_data.is_complete(tmp_path / "e", (TINY[0], broken))


def test_ensure_dataset_writes_an_index_and_reuses_a_complete_rendering(tmp_path):
    directory = sample_data.ensure_dataset(str(tmp_path / "data"), workers=2, pieces=TINY)
    files = sorted(Path(directory).glob("*.mid"))
    assert [f.name for f in files] == ["bach_bwv269.mid", "bach_bwv66.6.mid"]
    index = sample_data._read_index(Path(directory))
    assert [e["corpus_path"] for e in index["files"]] == list(TINY)
    assert {e["name"]: e["sha256"] for e in index["files"]} == {f.name: _sha(f) for f in files}
    assert sample_data.is_complete(directory, TINY)
    assert not sample_data.is_complete(directory, TINY[:1])  # another selection is not this one

    before = _file_identity(directory)
    assert sample_data.ensure_dataset(directory, workers=2, pieces=TINY) == directory
    assert _file_identity(directory) == before  # nothing rendered or rewritten

    assert sample_data.ensure_dataset(directory, workers=1, pieces=TINY, force=True) == directory
    after = _file_identity(directory)
    assert all(after[name] != before[name] for name in before)  # --force renders again
    assert {f.name: _sha(f) for f in files} == {e["name"]: e["sha256"] for e in index["files"]}


def test_a_partial_rendering_is_rendered_again(tmp_path):
    directory = Path(sample_data.ensure_dataset(str(tmp_path / "data"), workers=1, pieces=TINY))
    good = {p.name: _sha(p) for p in directory.glob("*.mid")}

    # A run killed before writing the index: the files are there, the index is not.
    (directory / sample_data.INDEX_NAME).unlink()
    assert not sample_data.is_complete(directory, TINY)
    before = _file_identity(directory)
    sample_data.ensure_dataset(str(directory), workers=1, pieces=TINY)
    assert sample_data.is_complete(directory, TINY)
    after = _file_identity(directory)
    assert all(after[name] != before[name] for name in good)
    assert {p.name: _sha(p) for p in directory.glob("*.mid")} == good

    # A file damaged after the index was written no longer matches its recorded hash.
    damaged = directory / "bach_bwv269.mid"
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert not sample_data.is_complete(directory, TINY)
    sample_data.ensure_dataset(str(directory), workers=1, pieces=TINY)
    assert _sha(damaged) == good["bach_bwv269.mid"]


def test_a_changed_selection_removes_the_files_of_the_old_one(tmp_path):
    directory = sample_data.ensure_dataset(str(tmp_path / "data"), workers=1, pieces=TINY)
    (Path(directory) / "someone_elses.mid").write_bytes(b"MThd")
    sample_data.ensure_dataset(directory, workers=1, pieces=TINY[:1])
    assert sorted(p.name for p in Path(directory).glob("*.mid")) == [
        "bach_bwv66.6.mid",
        "someone_elses.mid",
    ]
    assert sample_data.is_complete(directory, TINY[:1])
