"""REMI through MidiTok: MIDI bytes ⇄ REMI tokens, parsed by symusic. The encoding with rhythm.

REMI (Huang and Yang 2020) writes time as ``Bar`` and ``Position`` tokens (a 16th-note grid) and
every note as ``Pitch`` then ``Duration``; silences longer than a 16th can be ``Rest`` tokens. The
tokenizer is MidiTok's own (pinned in ``setup.py``); this module only chooses its configuration
(:func:`tokenizer_config`, justified in ``docs/ENCODING.md``) and decides which notes go in:

* every non-drum track is merged into one stream (``parts="all"``), or only the first non-drum
  track that has notes (``parts="first"``); drum tracks (MIDI channel 10) never give pitched tokens;
* MidiTok quantises onsets and durations, drops notes outside 21-108 and removes notes that repeat
  a pitch at one onset; then, where two notes of one pitch overlap (two voices in unison), the
  earlier is cut where the later starts (:func:`cut_overlaps`). A MIDI file cannot hold overlapping
  notes of one pitch on one channel, so without the cut ``decode`` would write notes that read back
  with other durations; with it, ``encode(decode(tokens)) == tokens`` for every encoded piece.

With a learned vocabulary (``--bpe-vocab``, :meth:`RemiEncoding.learn`,
:mod:`preprocessing.encodings.remi_bpe`) :meth:`~RemiEncoding.encode` writes learned tokens, each
the base tokens it stands for joined by ``+``; decoding, note events, transposition and the grammar
read them with or without the learned model.

Bad files raise :class:`preprocessing.encodings.midi_container.MidiParseError` with symusic's or
MidiTok's message, after the same container check as the reference encoding. No TensorFlow, no Beam,
no music21.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
from miditok import REMI, TokenizerConfig, TokSequence
from symusic import Note, Score, Track

from preprocessing.encodings import registry, remi_bpe
from preprocessing.encodings.base import Encoding, NoteEvent, Reader, check_parts, stable_hash
from preprocessing.encodings.midi_container import MidiParseError, with_every_track
from preprocessing.encodings.registry import EncodingError
from preprocessing.encodings.remi_grammar import SEPARATOR, RemiGrammar, base_tokens, time_value

(TOKENIZER_FILE,) = registry.REMI.saved_files
"""MidiTok's own saved tokenizer (``REMI.save``), written beside ``vocab.json``."""

BEATS_PER_BAR = 4
"""No time-signature tokens: MidiTok then counts every bar as 4/4 (``docs/ENCODING.md`` says
why)."""


def tokenizer_config() -> TokenizerConfig:
    """The REMI configuration this project records in its data (``docs/ENCODING.md``: the
    measurements)."""
    return TokenizerConfig(
        pitch_range=(21, 108),  # the piano's 88 keys, both ends included
        beat_res={(0, 4): 4, (4, 12): 2},  # 16th notes up to 4 beats, 8th notes up to 12 beats
        use_velocities=False,
        use_rests=True,
        beat_res_rest={(0, 1): 4, (1, 2): 2, (2, 12): 1},  # rests no finer than the onset grid
        use_time_signatures=False,
        use_tempos=False,
        use_chords=False,
        use_programs=False,
        use_pitchdrum_tokens=False,
        remove_duplicated_notes=True,
        special_tokens=["PAD"],
    )


def learning_config() -> TokenizerConfig:
    """:func:`tokenizer_config` for learning a vocabulary (:mod:`~preprocessing.encodings.remi_bpe`:
    the bar lines are kept by cutting the pieces, not by MidiTok's split of the ids)."""
    config = tokenizer_config()
    config.encode_ids_split = "no"
    return config


@functools.lru_cache(maxsize=1)
def base_vocab_size() -> int:
    """MidiTok's vocabulary of :func:`tokenizer_config` before learning (``PAD`` included): a
    learned vocabulary must be larger."""
    return len(REMI(tokenizer_config()).vocab)


UNSUPPORTED = (
    "use_velocities",
    "use_time_signatures",
    "use_tempos",
    "use_chords",
    "use_programs",
    "use_key_signatures",
    "use_sustain_pedals",
    "use_pitch_bends",
    "use_control_changes",
    "use_pitch_intervals",
)
"""Features whose tokens this module's merging, grammar and transposition do not handle."""


def check_supported(tokenizer: REMI) -> None:
    on = [flag for flag in UNSUPPORTED if getattr(tokenizer.config, flag, False)]
    if on or not tokenizer.config.using_note_duration_tokens:
        raise EncodingError(
            f"this REMI tokenizer uses {', '.join(on) or 'no Duration tokens'}, which this version "
            "of lstm-composer does not read"
        )


def merged_notes(score: Score, parts: str) -> Score | None:
    """One track with the notes of every non-drum track (or the first with notes); None if none
    has any."""
    tracks = [t for t in score.tracks if not t.is_drum and t.note_num() > 0]
    if parts == "first":
        tracks = tracks[:1]
    if not tracks:
        return None
    merged = Track(name="merged", program=0, is_drum=False)
    for track in tracks:
        merged.notes.extend(track.notes)
    merged.notes.sort()
    result = Score(score.ticks_per_quarter)
    result.tracks.append(merged)
    return result


def out_of_range(track: Track, pitch_range: tuple[int, int]) -> str:
    """Why a track with notes gives REMI none: they all lie outside the tokenizer's pitch range (a
    file of notes is not an empty file, so it says so, as a dead letter)."""
    pitches = track.notes.numpy()["pitch"]
    low, high = pitch_range
    return (
        f"none of its {len(pitches):,} notes lies in the piano range REMI keeps, MIDI {low}-{high} "
        f"(they lie at MIDI {int(pitches.min())}-{int(pitches.max())})"
    )


def cut_overlaps(track: Track, durations: np.ndarray) -> None:
    """Cut each note that still sounds when the next note of its pitch starts, in place.

    The cut length is the longest of ``durations`` (the tokenizer's, in this score's ticks, sorted)
    that ends by the next onset, so the result stays on the duration grid. The notes keep their
    order.
    """
    notes = track.notes.numpy()
    if len(notes["time"]) < 2:
        return
    order = np.lexsort((notes["time"], notes["pitch"]))
    time, pitch, duration = notes["time"][order], notes["pitch"][order], notes["duration"][order]
    gap = time[1:] - time[:-1]
    cut = np.flatnonzero((pitch[1:] == pitch[:-1]) & (duration[:-1] > gap))
    if cut.size == 0:
        return
    shortened = durations[np.maximum(np.searchsorted(durations, gap[cut], side="right") - 1, 0)]
    notes["duration"][order[cut]] = shortened
    track.notes = Note.from_numpy(**notes)


class RemiEncoding(Encoding):
    """MidiTok's REMI with :func:`tokenizer_config`, or with a saved tokenizer
    (:meth:`from_saved`), or with a learned vocabulary (:meth:`learn`): then :meth:`encode` gives
    learned tokens, and every method also reads them."""

    registration = registry.REMI

    def __init__(self, tokenizer: REMI | None = None):
        self.tokenizer = tokenizer if tokenizer is not None else REMI(tokenizer_config())
        check_supported(self.tokenizer)
        per_beat = self.tokenizer.config.max_num_pos_per_beat
        self.positions_per_beat = per_beat
        # The decoder writes time_division ticks per quarter, i.e. one tick per position.
        self._durations = np.array(
            sorted(
                time_value(token.split("_", 1)[1], per_beat)
                for token in self.tokenizer.vocab
                if token.startswith("Duration_")
            )
        )
        trained = self.tokenizer.is_trained
        self._strings = remi_bpe.token_strings(self.tokenizer) if trained else None

    @classmethod
    def learn(cls, pieces: Sequence[Sequence[str]], vocab_size: int) -> RemiEncoding:
        """A vocabulary of up to ``vocab_size`` tokens learned with MidiTok's BPE trainer from
        ``pieces`` of base tokens (fewer when they run out of pairs: see :attr:`learned_size`)."""
        tokenizer = REMI(learning_config())
        remi_bpe.train(tokenizer, pieces, vocab_size)
        return cls(tokenizer)

    @property
    def learned_size(self) -> int:
        """MidiTok's vocabulary size after learning (base tokens included); 0 without learning."""
        return len(self._strings) if self._strings is not None else 0

    @property
    def learned_hash(self) -> str:
        return remi_bpe.learned_hash(self.tokenizer)

    def base_tokens(self, tokens: Iterable[str]) -> list[str]:
        """The base tokens that ``tokens`` stand for (a learned token's own; a base token is
        itself): what :meth:`decode` and :meth:`note_events` read."""
        return base_tokens(tokens)

    def apply_learned(self, tokens: Sequence[str]) -> list[str]:
        """Base tokens → this tokenizer's learned tokens (themselves without a learned
        vocabulary)."""
        if self._strings is None:
            return list(tokens)
        return remi_bpe.apply(self.tokenizer, self._strings, tokens)

    # ----------------------------------------------------------------------- tokens

    def encode(self, data: bytes, parts: str = "all") -> list[str]:
        check_parts(parts)
        data, _ = with_every_track(data)
        try:
            score = Score.from_midi(data)
        except Exception as exc:  # noqa: BLE001 - symusic raises RuntimeError, but say what it was
            raise MidiParseError(
                f"symusic could not parse it: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return self._tokens(score, parts)
        except MidiParseError:
            raise
        except Exception as exc:  # noqa: BLE001 - a structurally odd score is a bad file, not a crash
            raise MidiParseError(
                f"symusic parsed it but MidiTok could not tokenize it: {type(exc).__name__}: {exc}"
            ) from exc

    def _tokens(self, score: Score, parts: str) -> list[str]:
        merged = merged_notes(score, parts)
        if merged is None:
            return []
        ready = self.tokenizer.preprocess_score(merged)  # quantised to one tick per position
        if not ready.tracks or ready.tracks[0].note_num() == 0:
            raise MidiParseError(out_of_range(merged.tracks[0], self.tokenizer.config.pitch_range))
        cut_overlaps(ready.tracks[0], self._durations)
        sequence = self.tokenizer.encode(ready, encode_ids=False, no_preprocess_score=True)[0]
        return self.apply_learned(sequence.tokens)

    def _score(self, tokens: Sequence[str]) -> Score:
        # a learned token decodes as the base tokens it stands for
        score = self.tokenizer.decode([TokSequence(tokens=base_tokens(tokens))])
        for track in score.tracks:
            cut_overlaps(track, self._durations)
        return score

    def decode(self, tokens: Sequence[str]) -> bytes:
        """A piano track at 120 bpm in 4/4; generated tokens whose notes overlap are cut as in
        encoding."""
        return self._score(tokens).dumps_midi()

    def transpose_token(self, token: str, semitones: int) -> str | None:
        """A ``Pitch_n`` becomes ``Pitch_{n + semitones}`` inside the tokenizer's pitch range;
        every other token (bars, positions, durations, velocities) is itself; a learned token
        moves each of its base tokens (the result may be no token MidiTok learned: its string still
        says what it stands for)."""
        if SEPARATOR in token:
            moved = [self.transpose_token(part, semitones) for part in token.split(SEPARATOR)]
            return None if None in moved else SEPARATOR.join(moved)  # type: ignore[arg-type]
        if not token.startswith("Pitch_"):
            return token
        low, high = self.tokenizer.config.pitch_range
        number = int(token[6:]) + semitones
        return f"Pitch_{number}" if low <= number <= high else None

    def note_events(self, tokens: Sequence[str]) -> list[NoteEvent]:
        score = self._score(tokens)
        per_quarter = score.ticks_per_quarter
        events = [
            NoteEvent(n.time / per_quarter, n.duration / per_quarter, n.pitch)
            for track in score.tracks
            for n in track.notes
        ]
        return sorted(events, key=lambda e: (e.onset, e.pitch))

    def bar_starts(self, tokens: Sequence[str]) -> list[int]:
        """The ``Bar`` tokens (MidiTok writes one per bar, empty bars included; 4/4 throughout),
        and learned tokens that begin with one (``--bpe-vocab`` learns within bars: no learned
        token holds a ``Bar`` after its first base token)."""
        return [index for index, token in enumerate(tokens) if token.startswith("Bar")]

    def grammar(self, vocab: Sequence[str]) -> RemiGrammar:
        return RemiGrammar(
            vocab, self.tokenizer.tokens_types_graph, self.positions_per_beat, BEATS_PER_BAR
        )

    # ----------------------------------------------------------------------- configuration

    def saved_files(self) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / TOKENIZER_FILE
            self.tokenizer.save(path)
            return {TOKENIZER_FILE: path.read_bytes()}

    @classmethod
    def from_saved(cls, read: Reader) -> RemiEncoding:
        data = read(TOKENIZER_FILE)
        try:
            document = json.loads(data)
            tokenization = document["tokenization"]
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EncodingError(
                f"{TOKENIZER_FILE} is not a MidiTok tokenizer file: {reason}"
            ) from exc
        if tokenization != "REMI":
            raise EncodingError(
                f"{TOKENIZER_FILE} holds a MidiTok {tokenization} tokenizer, not REMI"
            )
        problem = remi_bpe.learned_part_problem(document)
        if problem:
            raise EncodingError(f"{TOKENIZER_FILE}: {problem}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / TOKENIZER_FILE
            path.write_bytes(data)
            return cls(REMI(params=path))

    @property
    def config_hash(self) -> str:
        """The hash of MidiTok's own serialised configuration (not of the file, which names
        library versions), and of the learned vocabulary when there is one."""
        document = {
            "tokenization": type(self.tokenizer).__name__,
            "config": self.tokenizer.config.to_dict(serialize=True),
        }
        if self.tokenizer.is_trained:
            document["learned"] = self.learned_hash
        return stable_hash(document)

    @property
    def versions(self) -> dict[str, str]:
        return {"miditok": metadata.version("miditok"), "symusic": metadata.version("symusic")}


@functools.lru_cache(maxsize=1)
def _default_encoding() -> RemiEncoding:
    return RemiEncoding()


def tokens_from_midi_bytes(data: bytes, parts: str = "all") -> list[str]:
    """What a parse child runs for ``--encoding remi`` (``Registration.parse_function``): one
    tokenizer per child."""
    return _default_encoding().encode(data, parts)
