"""Small helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

TINY = [
    "--units",
    "16",
    "--layers",
    "2",
    "--dense-units",
    "16",
    "--embedding-dim",
    "8",
    "--dropout",
    "0.1",
    "--seed",
    "3",
]
"""Trainer flags for a tiny network: tests train in seconds."""


def tiny_training(data_dir, job_dir, epochs: int, sample_every: int = 2) -> list[str]:
    """``train`` flags for a tiny network on ``data_dir``, written to ``job_dir``: batches of 16
    at a high learning rate, so a few epochs learn something."""
    return [
        *("--data-dir", str(data_dir), "--job-dir", str(job_dir), "--epochs", str(epochs)),
        *("--batch-size", "16", "--learning-rate", "0.02", "--sample-every", str(sample_every)),
        *TINY,
    ]


def main_output(main, argv: list[str]) -> tuple[int, str]:
    """``main(argv)``'s exit status and what it printed on stdout."""
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    return code, stdout.getvalue()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``logdir``, read back with TensorBoard's own reader.

    Sample summaries (``sample/*``: images, audio, text) are left out; tests read those directly.
    """
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return {
        tag: sorted((e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag))
        for tag in acc.Tags()[event_accumulator.TENSORS]
        if not tag.startswith("sample/")
    }


def unwritable_folder(tmp_path) -> Path | None:
    """A folder that really refuses a new file here, or None: a read-only folder for a normal user,
    ``/sys`` for root (whom permissions do not stop; sysfs takes no new files from anyone)."""
    import os
    from pathlib import Path

    folder = Path("/sys")
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    try:
        (folder / "probe").write_bytes(b"")
    except OSError:
        return folder
    (folder / "probe").unlink()
    return None


def with_silent_gap(data: bytes, ticks: int, before_note: int = 0) -> bytes:
    """``data`` (a MIDI file whose notes start together with the previous event, as music21 writes
    them) with the delta time before its ``before_note``-th note-on set to ``ticks``.

    0x0FFFFFFF ticks is issue 10's reproduction: 3 bytes inserted into an otherwise good file (the
    delta 00 becomes FF FF FF 7F, and the track chunk's length grows by 3). Written with music21's
    own MIDI reader and writer, so that the test does not build its input with the code it tests.
    """
    from music21 import midi

    original = midi.MidiFile()
    original.readstr(data)
    assert original.writestr() == data, "music21 does not write this file back byte for byte"
    for track in original.tracks:
        note_ons = [
            i
            for i, event in enumerate(track.events)
            if event.type == midi.ChannelVoiceMessages.NOTE_ON and event.velocity
        ]
        if len(note_ons) > before_note:
            delta = track.events[note_ons[before_note] - 1]
            assert isinstance(delta, midi.DeltaTime) and delta.time == 0
            delta.time = ticks
            return original.writestr()
    raise ValueError(f"no note-on number {before_note} in this file")


def melody_midi(seed: int = 0, notes: int = 48, pitches: range = range(55, 80)) -> bytes:
    """One track of notes of 1/4, 1/2, 1 and 2 quarter notes, some overlapping the next onset (a
    REMI test piece)."""
    import numpy as np
    from symusic import Note, Score, Track

    rng = np.random.default_rng(seed)
    score, track, time = Score(480), Track(program=0), 0
    for _ in range(notes):
        duration = int(rng.choice([120, 240, 480, 960]))
        track.notes.append(Note(time, duration, int(rng.choice(list(pitches))), 80))
        if rng.random() < 0.3:  # a second voice at the same onset
            track.notes.append(Note(time, duration * 2, int(rng.choice(list(pitches))) - 12, 70))
        time += duration
    score.tracks.append(track)
    return score.dumps_midi()


def is_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie that someone else must reap counts as
    gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until_gone(pid: int, seconds: float = 60.0) -> bool:
    """Poll until ``pid`` has exited or ``seconds`` have passed; True if it has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not is_gone(pid):
        time.sleep(0.05)
    return is_gone(pid)


def walk_grammar(grammar, vocab, pieces: dict) -> dict:
    """Each piece (name → tokens) through a fresh state of ``grammar``, asserting every token is
    allowed where it stands (the message names the piece, the position and the tokens before it);
    returns each piece's final state."""
    index = {token: i for i, token in enumerate(vocab)}
    states = {}
    for name, piece in pieces.items():
        state = grammar.start()
        for position, token in enumerate(piece):
            assert state.allowed()[index[token]], (
                name,
                position,
                piece[max(0, position - 6) : position + 1],
            )
            state.push(token)
        states[name] = state
    return states
