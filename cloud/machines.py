"""Machine types and their GPUs: which accelerators a Vertex AI / GKE machine type can hold.

Accelerator-optimized machine types (``a2-``, ``a3-``, ``a4-``, ``g2-``) come with a fixed number and
kind of GPU; ``n1-`` machines take T4 / V100 / P100 / P4 attached in counts of 1, 2, 4 (and 8 for V100);
other families take none. :func:`resolve_accelerators` turns the flags into the one (type, count) the
machine can really hold, or stops with a :class:`SubmitError` before any request. This is the lowest
module of the package, so :class:`SubmitError` lives here and every other module imports it from here.
"""

from __future__ import annotations

import re

DEFAULT_MACHINE_TYPE = "g2-standard-8"


class SubmitError(ValueError):
    """A flag that cannot work; the message says why and what to do."""


# Accelerator-optimized machine types: GPUs built in (kind, count). Count None: read from the name.
_BUILT_IN_GPUS: tuple[tuple[str, str, int | None], ...] = (
    (r"a2-highgpu-(\d+)g", "NVIDIA_TESLA_A100", None),
    (r"a2-megagpu-16g", "NVIDIA_TESLA_A100", 16),
    (r"a2-ultragpu-(\d+)g", "NVIDIA_A100_80GB", None),
    (r"a3-highgpu-(\d+)g", "NVIDIA_H100_80GB", None),
    (r"a3-megagpu-8g", "NVIDIA_H100_MEGA_80GB", 8),
    (r"a3-ultragpu-8g", "NVIDIA_H200_141GB", 8),
    (r"a4-highgpu-8g", "NVIDIA_B200", 8),
)
_G2_L4_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}
# N1 machines: GPUs attach in these counts.
_N1_GPU_COUNTS = {
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_P4": (1, 2, 4),
}
# GKE's node label cloud.google.com/gke-accelerator for each Vertex accelerator type.
GKE_ACCELERATOR = {
    "NVIDIA_TESLA_T4": "nvidia-tesla-t4",
    "NVIDIA_TESLA_V100": "nvidia-tesla-v100",
    "NVIDIA_TESLA_P100": "nvidia-tesla-p100",
    "NVIDIA_TESLA_P4": "nvidia-tesla-p4",
    "NVIDIA_TESLA_A100": "nvidia-tesla-a100",
    "NVIDIA_A100_80GB": "nvidia-a100-80gb",
    "NVIDIA_L4": "nvidia-l4",
    "NVIDIA_H100_80GB": "nvidia-h100-80gb",
    "NVIDIA_H100_MEGA_80GB": "nvidia-h100-mega-80gb",
    "NVIDIA_H200_141GB": "nvidia-h200-141gb",
    "NVIDIA_B200": "nvidia-b200",
}
GPU_TYPES = tuple(GKE_ACCELERATOR)


def built_in_gpus(machine_type: str) -> tuple[str, int] | None:
    """(accelerator type, count) of an accelerator-optimized machine type; None for other types."""
    for pattern, kind, count in _BUILT_IN_GPUS:
        match = re.fullmatch(pattern, machine_type)
        if match:
            return kind, count if count is not None else int(match.group(1))
    match = re.fullmatch(r"g2-standard-(\d+)", machine_type)
    if match and int(match.group(1)) in _G2_L4_COUNT:
        return "NVIDIA_L4", _G2_L4_COUNT[int(match.group(1))]
    return None


def _same_family_with(machine_type: str, count: int) -> str | None:
    """A machine type of the same family that holds ``count`` GPUs (for a helpful message)."""
    family = re.match(r"^([a-z0-9]+-[a-z]+)-", machine_type)
    if not family:
        return None
    candidates = [f"{family.group(1)}-{n}g" for n in (1, 2, 4, 8, 16)]
    candidates += [f"g2-standard-{n}" for n in sorted(_G2_L4_COUNT)]
    for candidate in candidates:
        gpus = built_in_gpus(candidate)
        if gpus and gpus[1] == count and candidate.startswith(family.group(1)):
            return candidate
    return None


def resolve_accelerators(machine_type: str, accelerator_type: str | None, count: int | None) -> tuple[str | None, int]:
    """The (accelerator type, count) for a machine; raises :class:`SubmitError` for what cannot be."""
    if accelerator_type is not None and accelerator_type not in GPU_TYPES:
        raise SubmitError(
            f"--accelerator-type {accelerator_type} is not a GPU type Vertex AI knows; use one of {', '.join(GPU_TYPES)}"
        )
    if count is not None and count < 0:
        raise SubmitError(f"--accelerator-count must be 0 or more, not {count}")
    fixed = built_in_gpus(machine_type)
    if fixed:
        kind, n = fixed
        if accelerator_type is not None and accelerator_type != kind:
            raise SubmitError(f"{machine_type} comes with {kind} GPUs, not {accelerator_type}")
        if count is not None and count != n:
            other = _same_family_with(machine_type, count)
            hint = f"; for {count}, use {other}" if other else ""
            raise SubmitError(
                f"--accelerator-count {count} does not fit {machine_type}: it holds exactly {n} {kind} GPU(s){hint}"
            )
        return kind, n
    if machine_type.startswith("n1-"):
        if not count and accelerator_type is None:
            if count == 0:
                return None, 0
            raise SubmitError(
                f"{machine_type} has no GPU of its own: give --accelerator-type "
                f"({', '.join(_N1_GPU_COUNTS)}) and --accelerator-count, or use a g2-/a2-/a3- machine type"
            )
        if accelerator_type not in _N1_GPU_COUNTS:
            raise SubmitError(
                f"{machine_type} takes {', '.join(_N1_GPU_COUNTS)} GPUs"
                + (f", not {accelerator_type}" if accelerator_type else "; give --accelerator-type")
            )
        count = 1 if count is None else count
        allowed = _N1_GPU_COUNTS[accelerator_type]
        if count not in allowed:
            raise SubmitError(
                f"--accelerator-count {count} does not fit {machine_type}: an N1 machine holds "
                f"{', '.join(map(str, allowed))} {accelerator_type} GPU(s)"
            )
        return accelerator_type, count
    if accelerator_type is not None or count:
        raise SubmitError(
            f"{machine_type} cannot hold GPUs: GPUs come built into a2-, a3-, a4- and g2- machine types "
            "or attach to n1- machine types"
        )
    return None, 0
