"""``trainer.gpu_check`` on a machine without a GPU: it must fail, clearly; and the way it proves
the cuDNN path (fused CudnnRNN ops in the traced step, which have GPU kernels only) is checked
piece by piece."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from trainer import cuda_libraries, gpu_check

ROOT = Path(__file__).resolve().parents[1]

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))
no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour on a machine without a GPU")


@no_gpu
def test_fails_clearly_without_a_gpu():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "trainer.gpu_check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "[FAIL] GPU visible: no GPU visible to TensorFlow" in result.stdout
    assert "[skip] LSTM on cuDNN: not run: no GPU" in result.stdout
    assert "python -m trainer.gpu_check: GPU check FAILED: " in result.stderr
    assert "passed" not in result.stdout


@no_gpu
def test_gpu_visible_check_says_what_it_found():
    check = gpu_check.check_gpu_visible()
    assert not check.ok
    assert "tf.config.list_physical_devices('GPU') is empty" in check.detail
    assert f"TensorFlow {tf.__version__}" in check.detail


def test_cudnn_rnn_ops_have_gpu_kernels_only():
    """The premise of the proof: a step holding CudnnRNNV3 can only have run on a GPU."""
    from tensorflow.python.framework import kernels

    for op in ("CudnnRNNV3", "CudnnRNNBackpropV3"):
        devices = {
            kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op).kernel
        }
        assert devices == {"GPU"}, (op, devices)


@no_gpu
def test_on_cpu_keras_traces_the_generic_kernel_and_the_check_says_so():
    check = gpu_check.check_lstm_cudnn()
    assert not check.ok
    assert "traced to 0 fused CudnnRNN op(s)" in check.detail
    assert (
        "fell back to the generic (slow) LSTM kernel because TensorFlow lists no GPU"
        in check.detail
    )


@no_gpu
def test_detects_the_fused_ops_when_keras_chooses_cudnn(monkeypatch):
    """Make Keras believe a GPU is listed (as on a GPU machine): the trainer's own model then traces
    to one CudnnRNNV3 per LSTM layer plus its backprop, which the counter finds, and running that
    step without a GPU fails instead of silently moving to the CPU."""
    import importlib

    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    monkeypatch.setattr(rnn, "_is_gpu_available", lambda: True)
    model = gpu_check.small_fast_model()
    layers = gpu_check.lstm_layer_count(model)
    concrete, (inputs, targets) = gpu_check.trace_train_step(model)
    monkeypatch.undo()
    assert layers == gpu_check.LAYERS == 2
    assert gpu_check.cudnn_op_counts(concrete) == (layers, layers)
    assert "CudnnRNNV3" in gpu_check.graph_op_types(concrete)
    with pytest.raises((tf.errors.NotFoundError, tf.errors.InvalidArgumentError)):
        concrete(inputs, targets)


def test_cudnn_version_older_than_tensorflows_is_a_failure(monkeypatch):
    class FakeCudnn:
        class cudnnGetVersion:  # noqa: N801 - mimics the C symbol
            restype = None

            def __new__(cls):
                return 90100  # cuDNN 9.1.0

    monkeypatch.setattr(cuda_libraries, "_load", lambda soname: FakeCudnn)
    monkeypatch.setattr(
        cuda_libraries, "required_cuda_packages", lambda: {"nvidia-cudnn-cu12": (9, 3, 0, 75)}
    )
    check = cuda_libraries.check_cudnn_version(9, 12)
    assert (
        not check.ok
        and "the loaded cuDNN is 9.1.0, older than the 9.3 TensorFlow was compiled with"
        in check.detail
    )
    check = cuda_libraries.check_cudnn_version(8, 12)
    assert not check.ok and "TensorFlow was built against cuDNN 8.x" in check.detail


def test_library_installed_but_not_on_the_search_path(monkeypatch, tmp_path):
    lib = tmp_path / "nvidia" / "cusolver" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcusolver.so.11").write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])

    def not_found(soname):
        raise OSError(f"{soname}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(cuda_libraries, "_load", not_found)
    check = next(c for c in cuda_libraries.check_libraries() if c.name == "libcusolver.so.11")
    assert not check.ok
    assert (
        f"installed at {lib}/libcusolver.so.11 but not on the library search path" in check.detail
    )


def test_and_cuda_floors_are_read_from_tensorflows_metadata():
    floors = cuda_libraries.required_cuda_packages()
    assert floors["nvidia-cudnn-cu12"][:2] >= (9, 3)
    assert set(floors) >= {
        "nvidia-cublas-cu12",
        "nvidia-cudnn-cu12",
        "nvidia-nccl-cu12",
        "nvidia-cusolver-cu12",
    }


# On a GPU machine the device check is the command itself: `python -m trainer.gpu_check` must exit 0
# and print "[  ok] LSTM on cuDNN" (see docs/CLOUD.md); CI has no GPU, so it is not a test here.
