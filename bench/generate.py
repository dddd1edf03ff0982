"""Benchmark: tokens/s of generation with carried LSTM state against the reference's sliding window.

Both run in this one process on the same network, so the ratio is meaningful on a noisy machine:

* carry (``--context carry``): the single-step copy reads the primer, then one step per new token;
* window (``--context window``, the reference's method): the whole ``sequence_length`` window is run
  through the network from a zero state for every new token.

The network has the reference's shape (3 x LSTM(512), Dense 256, sequence length 100) with random
weights: speed does not depend on training. Carry generates ``--tokens`` (default 500, as the
reference) after its 100-token primer, and its time includes reading the primer. The window method
costs the same for every token (a fixed-size window), so it is timed over ``--window-tokens`` tokens
(default 50) and its tokens/s stands for the full 500 (running all 500 would take minutes on a CPU).
The last line is a JSON object of the figures.

    python bench/generate.py [--model reference|fast] [--tokens 500] [--window-tokens 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("reference", "fast"), default="reference")
    parser.add_argument("--sequence-length", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=350)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--window-tokens", type=int, default=50)
    args = parser.parse_args(argv)

    import numpy as np

    from trainer import model as model_lib
    from trainer import sampling
    from trainer.composer import Composer

    model = model_lib.build(
        args.model, args.sequence_length, args.vocab, units=args.units, num_layers=args.layers
    )
    composer = Composer(model, args.sequence_length)
    primer = np.random.default_rng(0).integers(0, args.vocab, size=(1, args.sequence_length))
    for context in sampling.CONTEXTS:  # trace and warm up both paths before timing
        composer.generate(primer, 3, context=context, temperature=0.0)

    start = time.perf_counter()
    composer.generate(primer, args.tokens, context="carry", temperature=0.0)
    carry_s = time.perf_counter() - start
    start = time.perf_counter()
    composer.generate(primer, args.window_tokens, context="window", temperature=0.0)
    window_s = time.perf_counter() - start

    carry_rate = args.tokens / carry_s
    window_rate = args.window_tokens / window_s
    figures = {
        "model": args.model,
        "sequence_length": args.sequence_length,
        "units": args.units,
        "layers": args.layers,
        "carry_tokens": args.tokens,
        "window_tokens_timed": args.window_tokens,
        "carry_tokens_per_s": round(carry_rate, 2),
        "window_tokens_per_s": round(window_rate, 2),
        "speedup": round(carry_rate / window_rate, 1),
        "window_seconds_for_carry_tokens": round(args.tokens / window_rate, 1),
    }
    print(
        f"carry : {carry_rate:8.1f} tokens/s ({args.tokens} tokens after a {args.sequence_length}-token primer, "
        f"{carry_s:.1f} s)"
    )
    print(
        f"window: {window_rate:8.2f} tokens/s (the reference's loop; {args.tokens} tokens would take "
        f"{args.tokens / window_rate:.0f} s)"
    )
    print(f"speed-up: {carry_rate / window_rate:.1f}x")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
