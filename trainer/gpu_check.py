"""The GPU smoke check: ``python -m trainer.gpu_check`` (run it first in a new image or on a new
machine).

It passes only when TensorFlow sees a GPU *and* the trainer's LSTM runs on the fused cuDNN kernel;
anything less exits with status 1 and says which step failed. Checks, in order:

1. **CUDA libraries** (no GPU needed; the Dockerfile runs this part at build time with
   ``--libraries-only``): every library TensorFlow loads at run time, and cuDNN's version against
   TensorFlow's build (:mod:`trainer.cuda_libraries`).
2. **A GPU is visible**: ``tf.config.list_physical_devices("GPU")`` is not empty (and holds at least
   ``--expect-gpus`` devices).
3. **The LSTM runs on cuDNN.** A small copy of the trainer's own ``fast`` model
   (``trainer.model.fast``, so mixed precision and every layer setting are the ones training uses)
   is traced into a training step (forward, loss, gradients) inside ``tf.function``. How the cuDNN
   path is detected:

   * Keras 3 on TensorFlow chooses the kernel while tracing: when the layer's settings allow it and
     a GPU is listed, ``keras.src.backend.tensorflow.rnn.lstm`` emits the fused op ``CudnnRNNV3``;
     otherwise it falls back to the generic ``while`` loop of per-step matmuls, silently. So the
     traced graph (its ops and the ops of every function in its library) must hold one ``CudnnRNN*``
     forward op per LSTM layer and the matching ``CudnnRNNBackprop*`` ops.
   * Those ops have **GPU kernels only** (TensorFlow registers no CPU kernel for ``CudnnRNNV3``; the
     test suite checks this with ``get_registered_kernels_for_op``), and the step is run with soft
     device placement turned off. So a step that completes with a finite loss and finite gradients
     has executed cuDNN's LSTM on the GPU; a cuDNN that cannot initialise or does not fit fails
     here, loudly, instead of Keras quietly training on the slow kernel.

On a machine without a GPU the check fails (status 1) with "no GPU visible to TensorFlow" and says
what it found instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from trainer.cuda_libraries import Check, build_info, check_libraries

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROG = "python -m trainer.gpu_check"

# --------------------------------------------------------------------------- 2. GPU visible


def check_gpu_visible(expect_gpus: int = 1) -> Check:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        info = build_info()
        return Check(
            "GPU visible",
            False,
            "no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty; "
            f"TensorFlow {tf.__version__}, CUDA build {info.get('cuda_version', 'none')}, "
            f"cuDNN {info.get('cudnn_version', 'none')}). Is this a GPU machine, with the NVIDIA driver "
            "mounted into the container (docker run --gpus all; a GPU node pool on GKE)?",
        )
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        names.append(
            f"{details.get('device_name', gpu.name)}"
            + (f" (compute capability {capability[0]}.{capability[1]})" if capability else "")
        )
    if len(gpus) < expect_gpus:
        return Check(
            "GPU visible",
            False,
            f"{len(gpus)} GPU(s) visible, {expect_gpus} expected: {', '.join(names)}",
        )
    return Check("GPU visible", True, f"{len(gpus)} GPU(s): {', '.join(names)}")


# --------------------------------------------------------------------------- 3. LSTM on cuDNN

SEQUENCE_LENGTH, VOCAB_SIZE, UNITS, LAYERS, BATCH = 20, 48, 64, 2, 32


def small_fast_model():
    """The trainer's ``fast`` model at a small size (mixed_float16 when a GPU is present, as in
    training)."""
    from trainer import model as model_lib

    return model_lib.fast(
        SEQUENCE_LENGTH,
        VOCAB_SIZE,
        units=UNITS,
        num_layers=LAYERS,
        dense_units=32,
        embedding_dim=16,
        dropout=0.1,
    )


def trace_train_step(model):
    """A training step (forward, loss, gradients) as a concrete ``tf.function``, and inputs for
    it."""
    import tensorflow as tf

    from trainer import model as model_lib

    inputs = tf.random.stateless_uniform(
        [BATCH, SEQUENCE_LENGTH], seed=[1, 2], maxval=VOCAB_SIZE, dtype=tf.int64
    )
    targets = tf.random.stateless_uniform([BATCH], seed=[3, 4], maxval=VOCAB_SIZE, dtype=tf.int64)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            loss = tf.reduce_mean(model_lib.loss_fn(y, tf.cast(probabilities, tf.float32)))
        gradients = tape.gradient(loss, model.trainable_variables)
        return loss, tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients])

    return step.get_concrete_function(inputs, targets), (inputs, targets)


def graph_op_types(concrete) -> list[str]:
    """Op types of a concrete function's graph, including every function in its library."""
    graph_def = concrete.graph.as_graph_def()
    types = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        types += [node.op for node in function.node_def]
    return types


def cudnn_op_counts(concrete) -> tuple[int, int]:
    """(forward, backward) fused cuDNN RNN ops in the traced step."""
    types = graph_op_types(concrete)
    forward = sum(
        1 for t in types if t.startswith("CudnnRNN") and "Backprop" not in t and "Params" not in t
    )
    backward = sum(1 for t in types if t.startswith("CudnnRNNBackprop"))
    return forward, backward


def lstm_layer_count(model) -> int:
    import keras

    return sum(isinstance(layer, keras.layers.LSTM) for layer in model.layers)


def check_lstm_cudnn() -> Check:
    import math

    import tensorflow as tf

    model = small_fast_model()
    layers = lstm_layer_count(model)
    concrete, (inputs, targets) = trace_train_step(model)
    forward, backward = cudnn_op_counts(concrete)
    if forward < layers or backward < layers:
        return Check(
            "LSTM on cuDNN",
            False,
            f"the model's {layers} LSTM layer(s) traced to {forward} fused CudnnRNN op(s) and {backward} "
            "backprop op(s): Keras fell back to the generic (slow) LSTM kernel"
            + ("" if tf.config.list_logical_devices("GPU") else " because TensorFlow lists no GPU"),
        )
    tf.config.set_soft_device_placement(False)  # a cuDNN op must run on the GPU or fail, never move
    try:
        loss, gradient_sum = concrete(inputs, targets)
        loss, gradient_sum = float(loss), float(gradient_sum)
    except tf.errors.OpError as exc:
        message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
        return Check("LSTM on cuDNN", False, f"the cuDNN LSTM step failed on the GPU: {message}")
    if not (math.isfinite(loss) and math.isfinite(gradient_sum)):
        return Check(
            "LSTM on cuDNN",
            False,
            f"the cuDNN LSTM step ran but gave loss {loss}, gradient sum {gradient_sum}",
        )
    precision = (
        "mixed_float16"
        if any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers)
        else "float32"
    )
    return Check(
        "LSTM on cuDNN",
        True,
        f"{layers} LSTM layer(s) ran as {forward} CudnnRNNV3 + {backward} backprop op(s) on the GPU "
        f"({precision}; loss {loss:.3f})",
    )


# --------------------------------------------------------------------------- entry point


def run_checks(libraries_only: bool = False, expect_gpus: int = 1) -> list[Check]:
    checks = check_libraries()
    if libraries_only:
        return checks
    gpu = check_gpu_visible(expect_gpus)
    checks.append(gpu)
    if gpu.ok:
        checks.append(check_lstm_cudnn())
    else:
        checks.append(Check("LSTM on cuDNN", False, "not run: no GPU", skipped=True))
    return checks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fail unless TensorFlow sees a GPU and the trainer's LSTM runs on the cuDNN kernel.",
    )
    parser.add_argument(
        "--libraries-only",
        action="store_true",
        help="only check that the CUDA libraries load and cuDNN's version fits (no GPU needed)",
    )
    parser.add_argument(
        "--expect-gpus", type=int, default=1, help="fail if fewer GPUs are visible (default 1)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checks = run_checks(libraries_only=args.libraries_only, expect_gpus=args.expect_gpus)
    for check in checks:
        print(check.line(), flush=True)
    failed = [check for check in checks if not check.ok and not check.skipped]
    what = "library check" if args.libraries_only else "GPU check"
    if failed:
        print(
            f"{PROG}: {what} FAILED: {failed[0].name}: {failed[0].detail}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"{what} passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
