"""Benchmark: REMI with and without a learned vocabulary (``preprocess --bpe-vocab N``), on the
embedded dataset, at equal CPU time.

In one run, on this machine:

1. the embedded dataset preprocessed with the REMI quickstart's flags, once as it is and once with
   ``--bpe-vocab N`` (default 1,000): the tokens, the tokens per beat and per note of every piece
   (train and validation, :func:`trainer.bits_per_beat.token_rate`), and the vocabulary sizes;
2. a model of the quickstart's REMI preset trained on each, for the same CPU time: the preset's own
   on the plain data (its steps, as ``bench/quality.py --grid`` calibrates them: three short runs
   per setting), the steps that cost as much on the learned vocabulary;
3. each model scored by ``evaluate`` on every validation window: bits per beat and per note (the
   figure that compares vocabularies), accuracy beside the bigram (which does not);
4. generation speed: each trained model composes ``--tokens`` tokens from its own primers under its
   grammar (``--context carry``, the default), three times, fastest kept: tokens per second, and
   beats per second (the composed piece's quarter notes, as its encoding decodes it).

Prints a JSON line per stage and ends with one JSON object of every figure.

    python bench/bpe.py [--bpe-vocab 1000] [--tokens 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality import ROOT, cpu_costs, preset_flags, run  # noqa: E402


def preprocess(out: str, flags: list[str]) -> None:
    """``lstm-composer preprocess`` of the embedded dataset into ``out``."""
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_composer", "preprocess", "--output", out, *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        cwd=ROOT,
    )
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"preprocess failed with status {proc.returncode}")


def data_figures(data_dir: str) -> dict:
    """Tokens, vocabulary, and tokens per beat and per note of every piece of a data folder."""
    from preprocessing.reader import encoding_of
    from trainer import data as data_lib
    from trainer.bits_per_beat import token_rate

    data = data_lib.load(data_dir)
    encoding = encoding_of(data_dir, data.manifest)
    pieces = [
        [data.vocab[i] for i in piece]
        for split in ("train", "validation")
        for piece in data_lib.pieces(data, split)
    ]
    rate = token_rate(pieces, encoding)
    return {
        "vocab_size": data.vocab_size,
        "tokens": rate.tokens,
        "pieces": rate.pieces,
        "tokens_per_beat": round(rate.tokens_per_beat, 4),
        "tokens_per_note": round(rate.tokens_per_note, 4),
    }


def evaluate(model_dir: str, data_dir: str, out: str) -> dict:
    """``lstm-composer evaluate`` on every validation window: its next-token figures."""
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_composer", "evaluate", "--model-dir", model_dir,
         "--data-dir", data_dir, "--samples", "2", "--length", "100", "--output", out],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"evaluate failed with status {proc.returncode}")
    with open(out) as f:
        return json.load(f)["next_token"]


def generation_speed(model_dir: str, tokens: int, rounds: int = 3) -> tuple[float, float]:
    """Tokens and beats per second of composing ``tokens`` tokens from the model's first primer,
    under its grammar, carried state: the fastest of ``rounds`` (after a warm-up that traces
    TensorFlow's functions). Beats are the composed piece's own quarter notes, as its encoding
    decodes it (:func:`trainer.bits_per_beat.piece_length`)."""
    from preprocessing.reader import encoding_of
    from trainer.bits_per_beat import piece_length
    from trainer.composer import Composer
    from trainer.export import load_bundle

    bundle = load_bundle(model_dir)
    encoding = encoding_of(model_dir, bundle.manifest, remedy=None)
    composer = Composer(bundle.model, bundle.sequence_length, encoding.grammar(bundle.vocab))
    primer = bundle.primers[:1]
    composer.generate(primer, 8, seed=0)
    best, beats = float("inf"), 0.0
    for seed in range(rounds):
        start = time.perf_counter()
        ids = composer.generate(primer, tokens, seed=seed)
        seconds = time.perf_counter() - start
        if seconds < best:
            best = seconds
            piece = composer.pieces(primer, ids, bundle.vocab)[0]
            beats = piece_length(piece, encoding)[0]
    return tokens / best, beats / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bpe-vocab", type=int, default=1000)
    p.add_argument("--tokens", type=int, default=500, help="tokens per timed composition")
    args = p.parse_args(argv)

    from lstm_composer.quickstart import preset_for

    preset = preset_for("remi")
    train = dict(preset["train"])
    epochs, preset_steps = int(train.pop("epochs")), int(train.pop("steps_per_epoch"))
    base = preset_flags({**train, "sample_every": 0})
    prep = ["--encoding", "remi", *preset_flags(preset["preprocess"])]
    work = tempfile.mkdtemp(prefix="bench-bpe-")
    sides = {"remi": prep, f"remi_bpe{args.bpe_vocab}": [*prep, "--bpe-vocab", str(args.bpe_vocab)]}
    figures: dict = {"bpe_vocab": args.bpe_vocab, "epochs": epochs}
    costs = {}
    for name, flags in sides.items():
        data_dir = os.path.join(work, name)
        preprocess(data_dir, flags)
        figures[name] = data_figures(data_dir)
        costs[name] = cpu_costs(data_dir, base)
        print(json.dumps({name: figures[name], "cpu_s_per_step_and_validation": costs[name]}))
    step_s, validation_s = costs["remi"]
    budget = preset_steps * epochs * step_s + epochs * validation_s
    figures["cpu_budget_s"] = round(budget)
    for name in sides:
        data_dir, job = os.path.join(work, name), os.path.join(work, f"job-{name}")
        step_s, validation_s = costs[name]
        steps = max(epochs, round((budget - epochs * validation_s) / step_s / epochs) * epochs)
        flags = [*base, "--epochs", str(epochs), "--steps-per-epoch", str(steps // epochs)]
        row = run(data_dir, flags, name, keep_job=job)
        scores = evaluate(os.path.join(job, "model"), data_dir, os.path.join(work, f"{name}.json"))
        per_second, beats_per_second = generation_speed(os.path.join(job, "model"), args.tokens)
        figures[name].update(
            steps=steps,
            cpu_s=row["cpu_s"],
            val_accuracy=round(scores["val_accuracy"], 4),
            bigram_val_accuracy=round(scores["bigram_val_accuracy"], 4),
            val_bits_per_beat=round(scores["val_bits_per_beat"], 3),
            val_bits_per_note=round(scores["val_bits_per_note"], 3),
            generated_tokens_per_s=round(per_second, 1),
            generated_beats_per_s=round(beats_per_second, 2),
        )
        print(json.dumps({name: figures[name]}), flush=True)
    plain, learned = figures["remi"], figures[f"remi_bpe{args.bpe_vocab}"]
    figures["tokens_per_beat_change"] = round(
        learned["tokens_per_beat"] / plain["tokens_per_beat"] - 1, 3
    )
    figures["beats_per_s_ratio"] = round(
        learned["generated_beats_per_s"] / plain["generated_beats_per_s"], 2
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
