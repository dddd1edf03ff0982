"""Composing with a trained model: ``lstm-composer generate`` (flags: :mod:`trainer.generate_flags`).

Two ways to run the network over time (``--context``):

* ``carry`` (default, fast): a single-step copy of the trained network (same weights; each LSTM takes
  and returns its state) reads the primer one token at a time and then each new token, carrying the
  LSTM states forward. One step per token instead of a whole window: the cost of a token no longer
  grows with ``sequence_length``. The model of context differs from the reference: the state
  remembers everything since the primer, as char-rnn style samplers do.
* ``window`` (the reference's method, exactly): for each new token the last ``sequence_length``
  tokens are run through the full network from a zero state, then the window slides by one.

Decoding: ``--temperature 0`` is the argmax (the reference's choice); otherwise temperature,
``--top-k`` and ``--top-p`` (nucleus) sampling with a seeded generator, so ``--seed`` repeats a run
exactly (:func:`trainer.sampling.distribution`).

Grammar: every draw is masked by the encoding's sampling grammar (``Encoding.grammar``), one state
per sample that first reads the primer's tokens, so the first token continues the primer legally
and every REMI piece decodes whole (:mod:`preprocessing.remi_grammar`); the reference's grammar is
free and masks nothing, so its seeded runs draw what they always drew.

Output: the MIDI file (the encoding's ``decode``, the code that encodes; REMI from MidiTok's saved
tokenizer in ``model/``), a piano-roll PNG (:mod:`trainer.plots`), with ``--wav`` an audio preview,
and a JSON summary beside it, and the summary on stdout (tokens, distinct tokens, the longest
repeated loop, the pitch range: greedy decoding falls into loops, and this shows it). The output
and the primer are checked before the model is loaded, so a wrong path never costs a composition.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
from typing import Sequence

from preprocessing import quiet

quiet.import_tensorflow()  # first, so that TensorFlow's start-up lines stay hidden unless --verbose

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from preprocessing import records  # noqa: E402
from preprocessing.encoding import Encoding, Grammar  # noqa: E402
from preprocessing.midi_container import MidiParseError  # noqa: E402
from preprocessing.errors import first_line  # noqa: E402
from trainer import sampling  # noqa: E402
from trainer.export import Bundle, load_bundle  # noqa: E402
from trainer.generate_flags import CONTEXTS, PROG, build_parser, parse_args  # noqa: E402,F401 - the job's flags


class GenerateError(ValueError):
    """A problem with a path, the model folder's primers or the primer, reported as one sentence."""


# --------------------------------------------------------------------------- the single-step copy


def step_model(model: keras.Model) -> tuple[keras.Model, list[tuple[layers.LSTM, layers.LSTM]]]:
    """A copy of ``model`` that reads one token and the LSTM states, and returns probabilities and states.

    Inputs ``[token_ids (batch, 1), h_1, c_1, …, h_n, c_n]``; outputs ``[probabilities, h_1', c_1', …]``.
    LSTM layers are rebuilt with ``return_state=True`` and the trained weights; every other layer
    (embedding or rescaling, dropout, batch norm, dense) is the trained layer itself, shared. Also
    returns the (trained, single-step) LSTM pairs, whose weights must be copied again when the
    trained model changes (:meth:`Composer.sync_weights`).
    """
    token = keras.Input(shape=(1,), dtype="int64", name="token_id")
    x = token
    state_inputs, state_outputs, pairs = [], [], []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Reshape):  # the reference's (seq,) -> (seq, 1) features
            x = layers.Reshape((1,) + tuple(layer.target_shape[1:]))(x)
        elif isinstance(layer, layers.LSTM):
            h = keras.Input(shape=(layer.units,), name=f"{layer.name}_h")
            c = keras.Input(shape=(layer.units,), name=f"{layer.name}_c")
            single = layers.LSTM(
                layer.units, return_sequences=layer.return_sequences, return_state=True,
                dtype=layer.dtype_policy, name=f"{layer.name}_step",
            )
            x, h_out, c_out = single(x, initial_state=[h, c])
            single.set_weights(layer.get_weights())
            pairs.append((layer, single))
            state_inputs += [h, c]
            state_outputs += [h_out, c_out]
        else:
            x = layer(x)
    return keras.Model([token, *state_inputs], [x, *state_outputs], name=f"{model.name}_step"), pairs


def lstm_units(model: keras.Model) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, layers.LSTM)]


class Composer:
    """Runs a trained network token by token, in either context mode, each draw under ``grammar``
    (an encoding's sampling grammar over the model's vocabulary; None or a free one masks nothing)."""

    def __init__(self, model: keras.Model, sequence_length: int, grammar: Grammar | None = None):
        self.model = model
        self.sequence_length = sequence_length
        self.grammar = grammar
        self.units = lstm_units(model)
        self._pairs: list = []
        self._full = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._step = None

    def _ensure_step(self):
        if self._step is None:
            single, self._pairs = step_model(self.model)
            self._step = tf.function(lambda inputs: single(inputs, training=False), reduce_retracing=True)

    def sync_weights(self) -> None:
        """Copy the trained LSTM weights into the single-step copy again (after the model was trained on)."""
        for trained, single in self._pairs:
            single.set_weights(trained.get_weights())

    def zero_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, u), np.float32) for u in self.units for _ in range(2)]

    def step(self, token_ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        """One token per row in, next-token probabilities and new states out."""
        self._ensure_step()
        outputs = self._step([tf.constant(token_ids.reshape(-1, 1), tf.int64), *states])
        return np.asarray(outputs[0], np.float64), list(outputs[1:])

    def window_probabilities(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(self._full(tf.constant(windows, tf.int64)), np.float64)

    def generate(self, primers: np.ndarray, length: int, *, context: str = "carry", temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> np.ndarray:
        """``length`` new token ids for each primer row (``primers``: ``(samples, sequence_length)``).

        Under a grammar, each row's state reads its primer first, then every drawn token; the last
        tokens are drawn so that the piece ends whole (:meth:`GrammarState.allowed_within`).
        """
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}")
        primers = np.asarray(primers, np.int64).reshape(len(primers), -1)
        rng = np.random.default_rng(seed)
        out = np.zeros((len(primers), length), np.int64)
        states = sampling.grammar_states(self.grammar, primers)
        vocab = self.grammar.vocab if self.grammar is not None else ()

        def draw(probs: np.ndarray, t: int) -> list[int]:
            return sampling.draw(probs, states, vocab, length - t, temperature, top_k, top_p, rng)

        if context == "window":
            window = primers[:, -self.sequence_length:].copy()
            for t in range(length):
                probs = self.window_probabilities(window)
                out[:, t] = draw(probs, t)
                window = np.concatenate([window[:, 1:], out[:, t : t + 1]], axis=1)
            return out
        lstm = self.zero_states(len(primers))
        probs = None
        for t in range(primers.shape[1]):
            probs, lstm = self.step(primers[:, t], lstm)
        for t in range(length):
            out[:, t] = draw(probs, t)
            if t + 1 < length:
                probs, lstm = self.step(out[:, t], lstm)
        return out

    def pieces(self, primers: np.ndarray, ids: np.ndarray, vocab: Sequence[str]) -> list[list[str]]:
        """The tokens each row of :meth:`generate` writes (:func:`trainer.sampling.piece_tokens`)."""
        return [sampling.piece_tokens(self.grammar, vocab, primer, row) for primer, row in zip(primers, ids)]


# --------------------------------------------------------------------------- primers


def primer_from_midi(data: bytes, vocab: Sequence[str], sequence_length: int, parts: str, source: str,
                     encoding: Encoding | None = None) -> list[int]:
    """The last window of a MIDI file's tokens in the model's ``encoding`` (default the reference);
    tokens outside the vocabulary are skipped with a warning."""
    try:
        tokens = (encoding or sampling.REFERENCE).encode(data, parts)
    except MidiParseError as exc:
        raise GenerateError(f"--primer {source}: {exc}") from exc
    index = {token: i for i, token in enumerate(vocab)}
    known = [index[t] for t in tokens if t in index]
    skipped = len(tokens) - len(known)
    if skipped:
        print(f"warning: --primer {source}: skipped {skipped} of {len(tokens)} tokens that are not in the "
              "model's vocabulary", file=sys.stderr)
    if len(known) < sequence_length:
        raise GenerateError(
            f"--primer {source} has {len(known)} usable tokens; the model needs a window of {sequence_length}"
        )
    return known[-sequence_length:]


def choose_primers(bundle: Bundle, primer_path: str | None, samples: int, seed: int | None,
                   encoding: Encoding | None = None) -> np.ndarray:
    if primer_path:
        check_primer(primer_path)
        try:
            with tf.io.gfile.GFile(primer_path, "rb") as f:
                data = f.read()
        except (tf.errors.OpError, OSError) as exc:
            raise GenerateError(f"cannot read --primer {primer_path}: {first_line(exc)}") from None
        window = primer_from_midi(data, bundle.vocab, bundle.sequence_length, bundle.manifest.parts, primer_path,
                                  encoding)
        return np.array([window] * samples, np.int64)
    if not bundle.primers:
        raise GenerateError("the model folder has no primers.json; give a MIDI file with --primer")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(bundle.primers), size=samples)  # a random window, as the reference
    return np.array([bundle.primers[i] for i in picks], np.int64)


def check_primer(primer_path: str) -> None:
    if not tf.io.gfile.exists(primer_path):
        raise GenerateError(f"--primer {primer_path} not found")
    if tf.io.gfile.isdir(primer_path):
        raise GenerateError(f"--primer {primer_path} is a folder; give one MIDI file")


# --------------------------------------------------------------------------- outputs


def _parent(path: str) -> str:
    return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


def write_bytes(path: str, data: bytes) -> None:
    parent = _parent(path)
    if parent and not tf.io.gfile.exists(parent):
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def check_output(output: str, what: str | None = None) -> None:
    """Refuse an ``--output`` that could not be written, before anything is composed, and leave no trace.

    A folder is refused by name. Locally, the nearest folder that already exists on the way to the
    file must be a folder (not a regular file) that takes a new file, which a probe file written and
    deleted there shows (permissions alone do not: root, read-only mounts); the missing folders
    below it are made only when the piece is written. Object stores have no folders to walk: the
    probe goes straight into the output's parent. ``what`` names the flag in messages.
    """
    what = what or f"--output {output}"
    if tf.io.gfile.isdir(output):
        raise GenerateError(f"{what} is a folder; give a file name such as {records.join(output, 'piece.mid')}")
    folder = _parent(output) or "."
    if "://" not in output:
        while not tf.io.gfile.exists(folder) and folder not in (".", os.sep):
            folder = os.path.dirname(folder) or "."
        if not tf.io.gfile.isdir(folder):
            raise GenerateError(f"{what}: {folder} is a file, not a folder")
    probe = records.join(folder, f".lstm-composer-write-probe-{os.getpid()}")
    try:
        with tf.io.gfile.GFile(probe, "wb") as f:
            f.write(b"")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as exc:
        reason = first_line(exc).removeprefix(f"{probe}; ")  # TensorFlow's messages lead with the path
        raise GenerateError(f"{what}: cannot write into {folder}: {reason}") from None


def png_bytes(image: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(image)).numpy()


def output_paths(output: str, samples: int) -> list[str]:
    stem = output[:-4] if output.lower().endswith(".mid") else output
    return [output if samples == 1 else f"{stem}-{i + 1}.mid" for i in range(samples)]


def write_sample(path: str, tokens: list[str], encoding=None, title: str = "",
                 wav: bool = False) -> sampling.SampleSummary:
    """The MIDI file, its piano roll (``.png``), with ``wav`` its audio (``.wav``), and its summary
    (``.json``) side by side."""
    stem = path[:-4] if path.lower().endswith(".mid") else path
    encoding = encoding or sampling.REFERENCE
    write_bytes(path, encoding.decode(tokens))
    write_bytes(stem + ".png", png_bytes(sampling.piano_roll(tokens, encoding, title or posixpath.basename(path))))
    if wav:
        write_bytes(stem + ".wav", sampling.wav_bytes(sampling.synthesize(encoding.note_events(tokens))))
    summary = sampling.summarize(tokens, encoding)
    document = {**summary.__dict__, "loop_share": summary.loop_share, "tokens_text": tokens}
    write_bytes(stem + ".json", json.dumps(document, indent=1).encode())
    return summary


def log_sample_summaries(composer: Composer, primer: Sequence[int], vocab: Sequence[str], step: int,
                         length: int = 64, encoding=None) -> list[str]:
    """Generate a short greedy sample from ``primer`` and write it to the default TensorBoard writer.

    The piano roll as an image, the sample as audio (:func:`sampling.synthesize`), and its tokens as
    text. Greedy (temperature 0) so consecutive samples differ only because the model changed.
    """
    primers = np.array([primer])
    tokens = composer.pieces(primers, composer.generate(primers, length, context="carry", temperature=0.0), vocab)[0]
    encoding = encoding or sampling.REFERENCE
    title = f"step {step}: greedy sample of {length} tokens ({encoding.name} encoding)"
    tf.summary.image("sample/piano_roll", sampling.piano_roll(tokens, encoding, title)[None], step=step)
    wave = sampling.synthesize(encoding.note_events(tokens))
    tf.summary.audio("sample/audio", wave[None, :, None], sample_rate=sampling.SAMPLE_RATE, step=step)
    tf.summary.text("sample/tokens", " ".join(tokens), step=step)
    return tokens


# --------------------------------------------------------------------------- command line


def check_paths(args: argparse.Namespace, output_flag: str | None = None) -> None:
    """The output and the primer, checked before the model is loaded (the quickstart checks them
    before its first stage, naming its own ``output_flag``)."""
    check_output(args.output, output_flag)
    if args.primer:
        check_primer(args.primer)


def run(args: argparse.Namespace) -> list[tuple[str, sampling.SampleSummary]]:
    check_paths(args)
    bundle = load_bundle(args.model_dir)
    encoding = sampling.encoding_for(bundle.manifest, args.model_dir)
    primers = choose_primers(bundle, args.primer, args.num_samples, args.seed, encoding)
    composer = Composer(bundle.model, bundle.sequence_length, encoding.grammar(bundle.vocab))
    ids = composer.generate(primers, args.length, context=args.context, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    results = []
    for path, tokens in zip(output_paths(args.output, args.num_samples), composer.pieces(primers, ids, bundle.vocab)):
        title = sampling.settings_title(posixpath.basename(path), encoding.name, len(tokens), args.temperature,
                                        args.top_k, args.top_p, args.seed)
        try:
            results.append((path, write_sample(path, tokens, encoding, title, wav=args.wav)))
        except (tf.errors.OpError, OSError) as exc:
            raise GenerateError(f"cannot write {path}: {first_line(exc)}") from None
    return results


def compose(args: argparse.Namespace, prog: str = PROG) -> int:
    """Run the job and print what it wrote; a bad path, model folder or primer is one line
    (``<prog>: error: ...``) and status 2."""
    try:
        results = run(args)
    except (GenerateError, records.DataError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for path, summary in results:
        stem = path[:-4] if path.lower().endswith(".mid") else path
        audio = f", audio {stem}.wav" if args.wav else ""
        print(f"wrote {path} (piano roll {stem}.png{audio})")
        for line in summary.lines():
            print(f"  {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return compose(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
