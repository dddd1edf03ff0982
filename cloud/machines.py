"""Machine types and their GPUs: which accelerators a Vertex AI / GKE machine type can hold.

Accelerator-optimized machine types (``a2-``, ``a3-``, ``a4-``, ``g2-``) come with a fixed number
and kind of GPU; ``n1-`` machines take T4 / V100 / P100 / P4 attached in counts of 1, 2, 4 (and 8
for V100); ``n2-``, ``e2-`` and ``c2-`` take none. Only the predefined shapes of these families are
accepted: a made-up or mistyped machine type (``g2-standard-7``, ``foo-bar-9``) would otherwise be
sent to Vertex AI, or described as a machine "with no GPU". :func:`resolve_accelerators` turns the
flags into the one (type, count) the machine can really hold, or stops with a :class:`SubmitError`
before any request. This is the lowest module of the package, so :class:`SubmitError` lives here and
every other module imports it from here.
"""

from __future__ import annotations

DEFAULT_MACHINE_TYPE = "g2-standard-8"


class SubmitError(ValueError):
    """A flag that cannot work; the message says why and what to do."""


# Accelerator-optimized machine types, each with the GPUs built into it: (kind, count).
BUILT_IN_GPUS: dict[str, tuple[str, int]] = {
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    **{f"a2-ultragpu-{n}g": ("NVIDIA_A100_80GB", n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": ("NVIDIA_H100_80GB", n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8),
    "a4-highgpu-8g": ("NVIDIA_B200", 8),
    **{
        f"g2-standard-{cpus}": ("NVIDIA_L4", gpus)
        for cpus, gpus in {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}.items()
    },
}
# General-purpose machine types (vCPUs per shape): no GPU, except the GPUs n1- machines take
# attached.
_CPU_SHAPES: dict[str, tuple[int, ...]] = {
    "n1-standard": (1, 2, 4, 8, 16, 32, 64, 96),
    "n1-highmem": (2, 4, 8, 16, 32, 64, 96),
    "n1-highcpu": (2, 4, 8, 16, 32, 64, 96),
    "n2-standard": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128),
    "n2-highmem": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128),
    "n2-highcpu": (2, 4, 8, 16, 32, 48, 64, 80, 96),
    "e2-standard": (2, 4, 8, 16, 32),
    "e2-highmem": (2, 4, 8, 16),
    "e2-highcpu": (2, 4, 8, 16, 32),
    "c2-standard": (4, 8, 16, 30, 60),
}
MACHINE_TYPES: tuple[str, ...] = tuple(BUILT_IN_GPUS) + tuple(
    f"{family}-{cpus}" for family, shapes in _CPU_SHAPES.items() for cpus in shapes
)
"""Every machine type ``--machine-type`` accepts: Compute Engine's predefined shapes of these
families."""


def family(machine_type: str) -> str:
    """``g2-standard-8`` -> ``g2-standard``, ``a2-highgpu-4g`` -> ``a2-highgpu``."""
    return machine_type.rsplit("-", 1)[0]


FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(map(family, MACHINE_TYPES)))


def check_machine_type(machine_type: str) -> None:
    """Refuse a machine type that is not one of :data:`MACHINE_TYPES`, naming the valid shapes of
    its family, or the known families when the family itself is unknown."""
    if machine_type in MACHINE_TYPES:
        return
    shapes = [m for m in MACHINE_TYPES if family(m) == family(machine_type)]
    if shapes:
        raise SubmitError(
            f"--machine-type {machine_type} is not a shape of the {family(machine_type)} family; "
            f"use one of {', '.join(shapes)}"
        )
    raise SubmitError(
        f"--machine-type {machine_type} is not a machine type this tool knows; known families: "
        f"{', '.join(FAMILIES)} (e.g. {DEFAULT_MACHINE_TYPE})"
    )


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
    return BUILT_IN_GPUS.get(machine_type)


def _same_family_with(machine_type: str, count: int) -> str | None:
    """A machine type of the same family that holds ``count`` GPUs (for a helpful message)."""
    for candidate, (_, gpus) in BUILT_IN_GPUS.items():
        if family(candidate) == family(machine_type) and gpus == count:
            return candidate
    return None


def resolve_accelerators(
    machine_type: str, accelerator_type: str | None, count: int | None
) -> tuple[str | None, int]:
    """The (accelerator type, count) for a machine; raises :class:`SubmitError` for what cannot
    be."""
    check_machine_type(machine_type)
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
