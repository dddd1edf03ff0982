"""The CUDA libraries TensorFlow loads at run time, checked without a GPU (part 1 of the GPU check).

Each CUDA library TensorFlow loads at run time (cudart, cuBLAS, cuFFT, cuRAND, cuSOLVER, cuSPARSE,
nvJitLink, cuDNN, NCCL) must load by its soname through the normal loader search
(``LD_LIBRARY_PATH`` / ``ld.so.cache``), the way TensorFlow ``dlopen``\\ s them. A library that is
installed under ``site-packages/nvidia/*/lib`` but not on the search path is reported as such: TF
2.21's own RUNPATH lists only some of those folders (not cusolver, curand or nvjitlink), which is
the "Cannot dlopen some GPU libraries" failure of ``tensorflow[and-cuda]`` on a plain Python image.
The **cuDNN version** is read from the library itself (``cudnnGetVersion()``) and must have the
major version TensorFlow was built with (``tf.sysconfig.get_build_info()``) and be at least the
version TensorFlow's ``and-cuda`` extra asks for: the "Loaded runtime CuDNN library: X but source
was compiled with: Y" mismatch is caught here, before any GPU is involved.

:mod:`trainer.gpu_check` runs these checks first; each is a :class:`Check` line of its report.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def line(self) -> str:
        mark = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        return f"[{mark:>4}] {self.name}: {self.detail}"


# soname stem -> the pip package (site-packages/nvidia/<dir>/lib) that ships it. The soname's number
# is the CUDA major for most (cudart, cublas, cusparse, nvjitlink), the library's own major
# otherwise.
CUDA_LIBRARIES: tuple[tuple[str, str, str], ...] = (
    # (soname, nvidia/<dir>, what TensorFlow uses it for)
    ("libcudart.so.{cuda}", "cuda_runtime", "CUDA runtime"),
    ("libcublas.so.{cuda}", "cublas", "matmuls"),
    ("libcublasLt.so.{cuda}", "cublas", "matmuls"),
    ("libcufft.so.11", "cufft", "FFT"),
    ("libcurand.so.10", "curand", "random numbers"),
    ("libcusolver.so.11", "cusolver", "linear algebra"),
    ("libcusparse.so.{cuda}", "cusparse", "sparse ops"),
    ("libnvJitLink.so.{cuda}", "nvjitlink", "needed by cuSPARSE / cuSOLVER"),
    ("libcudnn.so.{cudnn}", "cudnn", "the LSTM kernel"),
    ("libnccl.so.2", "nccl", "all-reduce between GPUs"),
)


def build_info() -> dict:
    import tensorflow as tf

    return dict(tf.sysconfig.get_build_info())


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def required_cuda_packages() -> dict[str, tuple[int, ...]]:
    """The minimum version of each ``nvidia-*`` package that ``tensorflow[and-cuda]`` asks for."""
    from importlib import metadata

    floors: dict[str, tuple[int, ...]] = {}
    try:
        requires = metadata.requires("tensorflow") or []
    except metadata.PackageNotFoundError:
        return floors
    for requirement in requires:
        if 'extra == "and-cuda"' not in requirement:
            continue
        match = re.match(r"\s*(nvidia-[\w-]+)[^;]*?>=\s*([\d.]+)", requirement)
        if match:
            floors[match.group(1)] = version_tuple(match.group(2))
    return floors


def nvidia_library_dirs() -> list[str]:
    """Every ``site-packages/nvidia/*/lib`` folder on ``sys.path`` (what the Dockerfile
    registers)."""
    found = []
    for entry in sys.path:
        root = os.path.join(entry, "nvidia")
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                lib = os.path.join(root, name, "lib")
                if os.path.isdir(lib):
                    found.append(lib)
    return found


def _load(soname: str):
    """Load a library the way TensorFlow does: by soname, through the loader's search path."""
    return ctypes.CDLL(soname)


def _installed_copy(soname: str, package_dir: str) -> str | None:
    for lib in nvidia_library_dirs():
        if os.path.basename(os.path.dirname(lib)) == package_dir and os.path.exists(
            os.path.join(lib, soname)
        ):
            return os.path.join(lib, soname)
    return None


def check_libraries(info: dict | None = None) -> list[Check]:
    info = build_info() if info is None else info
    if not info.get("is_cuda_build"):
        return [
            Check(
                "CUDA libraries",
                False,
                "this TensorFlow is not a CUDA build; install tensorflow[and-cuda]",
            )
        ]
    cuda_major = version_tuple(str(info.get("cuda_version", "12")))[0]
    cudnn_major = version_tuple(str(info.get("cudnn_version", "9")))[0]
    checks = []
    for template, package_dir, purpose in CUDA_LIBRARIES:
        soname = template.format(cuda=cuda_major, cudnn=cudnn_major)
        try:
            _load(soname)
        except OSError as exc:
            reason = str(exc)
            if "libcuda.so.1" in reason:  # it links the driver, which only a GPU machine mounts
                checks.append(
                    Check(soname, True, f"found ({purpose}); needs the NVIDIA driver at run time")
                )
                continue
            copy = _installed_copy(soname, package_dir)
            if copy:
                detail = (
                    f"installed at {copy} but not on the library search path; add every "
                    "site-packages/nvidia/*/lib folder to LD_LIBRARY_PATH (or ld.so.conf.d + ldconfig)"
                )
            else:
                detail = (
                    f"cannot be loaded ({reason.splitlines()[0]}); install tensorflow[and-cuda], "
                    f"which ships it as nvidia-{package_dir.replace('_', '-')}-cu{cuda_major}"
                )
            checks.append(Check(soname, False, detail))
            continue
        checks.append(Check(soname, True, f"loaded ({purpose})"))
    checks.append(check_cudnn_version(cudnn_major, cuda_major))
    return checks


def check_cudnn_version(cudnn_major: int, cuda_major: int = 12) -> Check:
    """cuDNN's own version against TensorFlow's build (major) and its ``and-cuda`` floor (minor)."""
    soname = f"libcudnn.so.{cudnn_major}"
    try:
        library = _load(soname)
    except OSError:
        return Check("cuDNN version", False, f"{soname} cannot be loaded (see above)")
    library.cudnnGetVersion.restype = ctypes.c_size_t
    raw = int(library.cudnnGetVersion())
    # cuDNN 9 encodes major*10000 + minor*100 + patch
    loaded = (raw // 10000, raw % 10000 // 100, raw % 100)
    shown = ".".join(map(str, loaded))
    floor = required_cuda_packages().get(f"nvidia-cudnn-cu{cuda_major}")
    if loaded[0] != cudnn_major:
        return Check(
            "cuDNN version",
            False,
            f"the loaded cuDNN is {shown} but TensorFlow was built against cuDNN {cudnn_major}.x",
        )
    if floor and loaded[:2] < floor[:2]:
        return Check(
            "cuDNN version",
            False,
            f"the loaded cuDNN is {shown}, older than the {floor[0]}.{floor[1]} TensorFlow was "
            "compiled with (a minor version must be equal or higher)",
        )
    wanted = f" (TensorFlow asks for >= {floor[0]}.{floor[1]})" if floor else ""
    return Check("cuDNN version", True, f"{shown}{wanted}")
