"""Training throughput, as ratios measured in one run (``python bench/train.py``).

1. input / model: examples/s of the tf.data pipeline alone (read + parse + batch, no model) against
   examples/s the ``fast`` model consumes in training. Goal >= 20 (training is never input-bound).
2. stream / numpy: training examples/s reading TFRecords (trainer.data) against the reference's way,
   the whole array in memory as numpy (``Dataset.from_tensor_slices`` of the arrays). Goal >= 0.95.
3. fast / reference: training examples/s of ``--model fast`` against ``--model reference`` at the
   same size, on the TFRecord stream. Expect >= 1.5 on CPU; far more with cuDNN on a GPU.

Both training measurements use the trainer's own step function (trainer.steps.train_steps_function,
under the strategy the job would pick), on a synthetic pipeline output written through
preprocessing.records. Each of ``--repeats`` rounds times the four rates back to back in short
windows (after a warm-up call that traced the tf.function), and a ratio is the median over the
rounds of the ratio within one round, so slow phases of a shared machine hit both sides of it;
the rates shown are the best of the rounds. The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # the package, and tests/synthetic.py


def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--vocab-size", type=int, default=100)
    p.add_argument("--sequence-length", type=int, default=32)
    p.add_argument("--train-pieces", type=int, default=40)
    p.add_argument("--piece-length", type=int, default=500)
    p.add_argument("--num-shards", type=int, default=4)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dense-units", type=int, default=128)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=15, help="timed training steps per window")
    p.add_argument(
        "--input-batches", type=int, default=200, help="timed batches per input-only window"
    )
    p.add_argument(
        "--repeats", type=int, default=8, help="rounds; each times all four figures back to back"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import numpy as np
    import synthetic  # tests/synthetic.py: the test and benchmark fixture
    import tensorflow as tf

    from trainer import data as data_lib
    from trainer import model as model_lib
    from trainer.distribute import make_strategy, strategy_name
    from trainer.steps import train_steps_function

    strategy = make_strategy("auto", None)
    tmp = tempfile.mkdtemp(prefix="bench-train-")
    synthetic.write_dataset(
        tmp,
        vocab_size=args.vocab_size,
        sequence_length=args.sequence_length,
        train_pieces=args.train_pieces,
        validation_pieces=1,
        piece_length=args.piece_length,
        num_shards=args.num_shards,
    )
    data = data_lib.load(tmp)
    gb = args.batch_size
    print(
        f"data: {data.windows('train')} training windows, vocabulary {data.vocab_size}, sequence length "
        f"{data.sequence_length}; global batch {gb}; {strategy_name(strategy)}, "
        f"{strategy.num_replicas_in_sync} replica(s); GPU: {model_lib.gpu_present()}",
        flush=True,
    )

    def stream():
        return data_lib.dataset(data, "train", gb, seed=1)

    x, y = data_lib.numpy_windows(data, "train")
    following = np.concatenate([x[:, 1:], y[:, None]], axis=1)  # what the stream yields

    def in_memory():
        ds = (
            tf.data.Dataset.from_tensor_slices((x, following))
            .shuffle(10_000, seed=1)
            .repeat()
            .batch(gb, drop_remainder=True)
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    # -- input only
    def input_rate():
        it = iter(stream())
        for _ in range(20):
            next(it)
        start = time.perf_counter()
        for _ in range(args.input_batches):
            next(it)
        return args.input_batches * gb / (time.perf_counter() - start)

    # -- training
    def trainer(model_name, make_dataset):
        with strategy.scope():
            model = model_lib.build(
                model_name,
                data.sequence_length,
                data.vocab_size,
                units=args.units,
                num_layers=args.layers,
                dense_units=args.dense_units,
                embedding_dim=args.embedding_dim,
            )
            model.optimizer.build(model.trainable_variables)
        train_steps = train_steps_function(strategy, model, gb)
        iterator = iter(strategy.experimental_distribute_dataset(make_dataset()))
        float(train_steps(iterator, tf.constant(3))[0])  # trace + warm up

        def rate():
            start = time.perf_counter()
            float(train_steps(iterator, tf.constant(args.steps))[0])
            return args.steps * gb / (time.perf_counter() - start)

        return rate

    runs = {
        "fast_stream": trainer("fast", stream),
        "fast_numpy": trainer("fast", in_memory),
        "reference_stream": trainer("reference", stream),
    }
    best = dict.fromkeys([*runs, "input_only"], 0.0)
    ratios = {"input_over_model": [], "stream_over_numpy": [], "fast_over_reference": []}
    for round_ in range(args.repeats):
        now = {"input_only": input_rate()}
        for name, rate in runs.items():
            now[name] = rate()
        for name, value in now.items():
            best[name] = max(best[name], value)
        ratios["input_over_model"].append(now["input_only"] / now["fast_stream"])
        ratios["stream_over_numpy"].append(now["fast_stream"] / now["fast_numpy"])
        ratios["fast_over_reference"].append(now["fast_stream"] / now["reference_stream"])
        print(
            f"round {round_ + 1}: " + ", ".join(f"{k} {v:,.0f} ex/s" for k, v in now.items()),
            flush=True,
        )

    figures = {
        "input_examples_per_s": round(best["input_only"], 1),
        "fast_train_examples_per_s": round(best["fast_stream"], 1),
        "fast_numpy_train_examples_per_s": round(best["fast_numpy"], 1),
        "reference_train_examples_per_s": round(best["reference_stream"], 1),
        **{name: round(statistics.median(values), 3) for name, values in ratios.items()},
        "gpu": model_lib.gpu_present(),
        "rounds": args.repeats,
        "sizes": {
            k: getattr(args, k)
            for k in (
                "vocab_size",
                "sequence_length",
                "units",
                "layers",
                "dense_units",
                "embedding_dim",
                "batch_size",
                "steps",
            )
        },
    }
    print(f"(1) input pipeline / model consumption: {figures['input_over_model']}x (goal >= 20)")
    print(f"(2) TFRecord stream / in-memory numpy:  {figures['stream_over_numpy']} (goal >= 0.95)")
    print(
        f"(3) fast / reference:                   {figures['fast_over_reference']}x (expect >= 1.5 on CPU)"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
