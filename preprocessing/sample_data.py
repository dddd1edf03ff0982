"""The embedded default dataset: a fixed selection of music21's bundled corpus, rendered to MIDI.

Why this exists: the pipeline reads MIDI files, and a new user should be able to run the whole chain
without downloading anything. music21 ships a corpus of scores (MusicXML, Humdrum ``**kern``) inside
its wheel, so we render a fixed selection of it to multi-track MIDI files (one track per part) with
music21 itself, once, into a per-user cache directory, and reuse that rendering afterwards.

Properties this module guarantees, and how:

* **Fixed**: :data:`PIECES` (:mod:`preprocessing.sample_pieces`) is a literal tuple of corpus paths.
  A piece that fails to render raises; the dataset never silently shrinks.
* **Deterministic**: every piece is parsed with ``forceSource=True`` (music21's on-disk parse cache
  cannot change results) and written by music21's MIDI writer, which embeds no time stamps; the same
  music21 version gives the same bytes on every run (the tests render twice and compare).
* **Never stale**: :data:`DEFAULT_DIR` ends in a folder named after a hash of the selection, the
  music21 version and :data:`RENDER_VERSION`, so a changed selection or music21 upgrade renders
  afresh.
* **Never half-built**: each file is written to a temporary name and renamed into place, and
  ``index.json`` (file names, corpus paths, sha256) is written last, also by rename. A directory is
  complete only when its index matches the selection and every listed file has the listed hash, so a
  run killed half way is rendered again on the next call.

Rendering is music21's own ``score.write("midi")``: one track per part, repeats written out as
played (music21 expands them), notated tempo or music21's default. Nothing here quantises or edits
the music; what the pipeline later reads is whatever music21 makes of these files.

Command line: ``lstm-composer sample-data [--output DIR] [--workers N] [--force]`` (or
``python -m preprocessing.sample_data``). Imports music21 only (no Beam, no TensorFlow).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import music21
from music21 import corpus

from preprocessing import quiet
from preprocessing.encodings import reference
from preprocessing.sample_pieces import PIECES

RENDER_VERSION = 1
"""Bump when the way a piece is rendered changes, so that cached renderings are not reused."""

INDEX_NAME = "index.json"
"""Written last: its presence (with matching hashes) is what marks a rendering as complete."""

# --------------------------------------------------------------------------- locations and names


def selection_digest(pieces: Sequence[str] = PIECES) -> str:
    """A short hash of everything that determines the rendered bytes: the pieces, music21, our
    renderer."""
    text = json.dumps(
        {"pieces": list(pieces), "music21": music21.__version__, "render_version": RENDER_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def cache_root() -> Path:
    """Where per-user caches go: ``$LSTM_COMPOSER_CACHE``, else ``$XDG_CACHE_HOME/lstm-composer``,
    else ``~/.cache/lstm-composer``. Read at import time for :data:`DEFAULT_DIR`."""
    explicit = os.environ.get("LSTM_COMPOSER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lstm-composer"


def default_dir(pieces: Sequence[str] = PIECES) -> str:
    """The cache folder for a selection; its name changes whenever the rendered bytes could."""
    return str(cache_root() / f"sample-midi-{selection_digest(pieces)}")


DEFAULT_DIR: str = default_dir()
"""Per-user cache folder for :data:`PIECES` (environment read at import time)."""


def output_name(corpus_path: str) -> str:
    """A stable, descriptive file name: ``bach/bwv66.6.mxl`` → ``bach_bwv66.6.mid``.

    Kept to ``[A-Za-z0-9._-]`` so that the names survive shells, globs and ``gs://`` unchanged.
    """
    stem = re.sub(r"\.(mxl|musicxml|xml|krn|abc)$", "", corpus_path, flags=re.IGNORECASE)
    stem = stem.replace("/", "_")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")
    return f"{stem}.mid"


def corpus_file(corpus_path: str) -> Path:
    """The file in music21's bundled corpus that ``corpus_path`` names; raises if it is not
    there."""
    try:
        path = Path(str(corpus.getWork(corpus_path)))
    except music21.exceptions21.CorpusException as exc:
        raise FileNotFoundError(
            f"{corpus_path!r} is not a file of music21's bundled corpus: {exc}"
        ) from exc
    if not path.is_file() or not path.as_posix().endswith(corpus_path):
        raise FileNotFoundError(
            f"{corpus_path!r} is not a file of music21's bundled corpus (got {path})"
        )
    return path


def sha256_file(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- rendering


def render_piece(corpus_path: str, out_dir: str | os.PathLike) -> str:
    """Render one corpus piece to ``out_dir/<output_name>``, one MIDI track per part; returns the
    path.

    ``forceSource=True`` makes music21 parse the score itself instead of loading a pickled parse
    from its cache, so the result cannot depend on what an earlier run (or another music21) left
    there. The file is written under a temporary name that the pipeline's ``*.mid`` glob does not
    match, then renamed, so a killed run leaves no truncated ``.mid`` behind.
    Raises ``RuntimeError`` (naming the piece) if music21 cannot parse or write it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / output_name(corpus_path)
    partial = out_dir / f".{target.name}.{os.getpid()}.partial"
    try:
        source = corpus_file(corpus_path)
        with warnings.catch_warnings():
            # The corpus files carry harmless notation quirks (overfull measures and the like) that
            # music21 warns about on every parse; they do not change the notes we render.
            warnings.simplefilter("ignore")
            score = corpus.parse(str(source), forceSource=True)
            score.write("midi", fp=str(partial))
        os.replace(partial, target)
    except Exception as exc:  # noqa: BLE001 - music21 raises many types; name the piece and stop
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"could not render corpus piece {corpus_path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return str(target)


def _render_task(args: tuple[str, str]) -> tuple[str, str, float]:
    corpus_path, out_dir = args
    start = time.perf_counter()
    path = render_piece(corpus_path, out_dir)
    return corpus_path, path, time.perf_counter() - start


def _render_all(pieces: Sequence[str], out_dir: str, workers: int) -> None:
    """Render every piece, biggest source first so that the last task to finish is a short one."""
    order = sorted(pieces, key=lambda p: (-corpus_file(p).stat().st_size, p))
    tasks = [(p, out_dir) for p in order]
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            _render_task(task)
        return
    # "spawn": a fresh interpreter per worker; forking a process that may hold threads (a test
    # runner, Beam) can deadlock, and music21 imports in about a second.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context
    ) as pool:
        futures = [pool.submit(_render_task, task) for task in tasks]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# --------------------------------------------------------------------------- the index


def _read_index(directory: Path) -> dict | None:
    try:
        return json.loads((directory / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(directory: str | os.PathLike, pieces: Sequence[str] = PIECES) -> bool:
    """True when ``directory`` holds a finished rendering of exactly ``pieces``.

    The index must exist, name this selection's digest and files, and every file must still have the
    sha256 the index recorded (hashing a few MB takes milliseconds; it catches truncated or edited
    files).
    """
    directory = Path(directory)
    index = _read_index(directory)
    if not index or index.get("digest") != selection_digest(pieces):
        return False
    files = index.get("files", [])
    if [entry.get("corpus_path") for entry in files] != list(pieces):
        return False
    for entry in files:
        path = directory / entry["name"]
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            return False
    return True


def _write_index(directory: Path, pieces: Sequence[str]) -> dict:
    files = []
    for corpus_path in pieces:
        path = directory / output_name(corpus_path)
        files.append(
            {
                "name": path.name,
                "corpus_path": corpus_path,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    index = {
        "digest": selection_digest(pieces),
        "music21": music21.__version__,
        "render_version": RENDER_VERSION,
        "files": files,
    }
    partial = directory / f".{INDEX_NAME}.{os.getpid()}.partial"
    partial.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, directory / INDEX_NAME)
    return index


def _remove_previous_rendering(directory: Path, keep: Iterable[str]) -> None:
    """Delete the files an older index listed (ours, from another selection), and the index itself.

    Only files we wrote are removed, so pointing ``--output`` at a folder with other MIDI files is
    safe; leftovers of an older selection would otherwise be read by the pipeline as part of the
    dataset.
    """
    keep = set(keep)
    old = _read_index(directory)
    (directory / INDEX_NAME).unlink(missing_ok=True)
    if old:
        for entry in old.get("files", []):
            name = str(entry.get("name", ""))
            if name and name not in keep and "/" not in name and name.endswith(".mid"):
                (directory / name).unlink(missing_ok=True)


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ensure_dataset(
    directory: str | None = None,
    workers: int | None = None,
    *,
    pieces: Sequence[str] = PIECES,
    force: bool = False,
) -> str:
    """Return a directory holding the rendered MIDI files of ``pieces``, rendering them if needed.

    A complete earlier rendering (see :func:`is_complete`) is reused as it is, without touching its
    files; anything else (no index, a killed run, another selection, a changed file) is rendered
    again, in parallel over ``workers`` processes (default: all cores). ``pieces`` exists so that
    tests can use a tiny selection; ``directory`` defaults to the cache folder for that selection.
    """
    pieces = tuple(pieces)
    if not pieces:
        raise ValueError("the selection is empty")
    names = [output_name(p) for p in pieces]
    if len(set(names)) != len(names):
        raise ValueError("two pieces of the selection map to the same file name")
    for corpus_path in pieces:
        corpus_file(corpus_path)  # a missing piece stops here, before anything is written
    target = Path(directory if directory is not None else default_dir(pieces))
    if not force and is_complete(target, pieces):
        return str(target)
    target.mkdir(parents=True, exist_ok=True)
    _remove_previous_rendering(target, names)
    _render_all(pieces, str(target), workers or default_workers())
    _write_index(target, pieces)
    return str(target)


# --------------------------------------------------------------------------- command line


def dataset_statistics(directory: str | os.PathLike, sequence_length: int = 100) -> dict:
    """Tokens and windows (stride 1) of a rendered directory, parsed back from the MIDI bytes as
    the pipeline will read them (``parts="all"``). Slow-ish (a full parse of every file): for
    reporting."""
    directory = Path(directory)
    index = _read_index(directory) or {"files": []}
    lengths = {
        e["name"]: len(
            reference.tokens_from_midi_bytes((directory / e["name"]).read_bytes(), parts="all")
        )
        for e in index["files"]
    }
    return {
        "files": len(lengths),
        "tokens": sum(lengths.values()),
        "windows": sum(max(0, n - sequence_length) for n in lengths.values()),
        "too_short": sum(1 for n in lengths.values() if n <= sequence_length),
        "lengths": lengths,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-composer sample-data",
        description="Render the embedded default dataset (music21's bundled corpus) to MIDI files.",
    )
    parser.add_argument(
        "--output", default=DEFAULT_DIR, help="directory for the .mid files (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel render processes (default: all cores)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="render again even if a complete rendering is already there",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="also parse the files back and print tokens and windows at sequence length 100",
    )
    quiet.add_verbose_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workers = args.workers or default_workers()
    start = time.perf_counter()
    reused = not args.force and is_complete(args.output)
    directory = ensure_dataset(args.output, workers, force=args.force)
    elapsed = time.perf_counter() - start
    index = _read_index(Path(directory)) or {"files": []}
    total_bytes = sum(e["bytes"] for e in index["files"])
    verb = "reused" if reused else f"rendered on {workers} worker(s)"
    print(
        f"{len(index['files'])} MIDI files ({total_bytes / 1e6:.1f} MB) {verb} in {elapsed:.1f} s"
    )
    print(f"directory: {directory}")
    if args.stats:
        t0 = time.perf_counter()
        stats = dataset_statistics(directory)
        print(
            f"tokens (parts=all): {stats['tokens']}; windows at sequence length 100, stride 1: "
            f"{stats['windows']}; pieces shorter than 101 tokens: {stats['too_short']} "
            f"(parsed back in {time.perf_counter() - t0:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
