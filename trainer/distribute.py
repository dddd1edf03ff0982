"""Who this process is in a training cluster, and the ``tf.distribute`` strategy it trains under.

The cluster comes from ``TF_CONFIG`` or from Vertex AI's ``CLUSTER_SPEC`` (whose worker pools map to
TensorFlow's roles); without either, the job is one machine. The strategy is MirroredStrategy over
every local GPU (or the CPU), MultiWorkerMirroredStrategy when several workers are named, or the
default strategy with ``--distribute none``. The chief is the one worker that writes into the job
directory and TensorBoard. TensorFlow is imported only to build the strategy.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from trainer.flags import UsageError

_VERTEX_ROLES = {
    "workerpool0": "chief",
    "workerpool1": "worker",
    "workerpool2": "ps",
    "workerpool3": "evaluator",
}


def cluster_config(env: Mapping[str, str]) -> dict | None:
    """``TF_CONFIG`` as a dict, or one derived from Vertex AI's ``CLUSTER_SPEC``; None when neither
    is set.

    CLUSTER_SPEC's worker pools map to TF roles: workerpool0 -> chief, workerpool1 -> worker,
    workerpool2 -> ps, workerpool3 -> evaluator.
    """
    text = env.get("TF_CONFIG")
    if text:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return config if config.get("cluster") else None
    text = env.get("CLUSTER_SPEC")
    if not text:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"CLUSTER_SPEC is not valid JSON: {exc}") from None
    cluster = {
        _VERTEX_ROLES[k]: v for k, v in spec.get("cluster", {}).items() if k in _VERTEX_ROLES and v
    }
    task = spec.get("task", {})
    return {
        "cluster": cluster,
        "task": {
            "type": _VERTEX_ROLES.get(task.get("type"), "chief"),
            "index": int(task.get("index", 0)),
        },
    }


def worker_count(config: dict | None) -> int:
    if not config:
        return 1
    cluster = config["cluster"]
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def is_chief(config: dict | None) -> bool:
    if not config or worker_count(config) <= 1:
        return True
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind == "chief" or (
        kind == "worker" and index == 0 and not config["cluster"].get("chief")
    )


def task_name(config: dict | None) -> str:
    if not config or worker_count(config) <= 1:
        return "chief"
    task = config.get("task", {})
    return f"{task.get('type')}-{task.get('index', 0)}"


@dataclass(frozen=True)
class Worker:
    """This process's place in the job: the cluster it belongs to, and whether it is the chief."""

    config: dict | None
    chief: bool
    name: str
    workers: int  # machines taking part in training (1 with --distribute none)

    @classmethod
    def from_env(cls, env: Mapping[str, str], distribute: str) -> Worker:
        config = cluster_config(env)
        workers = worker_count(config) if distribute != "none" else 1
        return cls(config, is_chief(config), task_name(config), workers)

    def describe(self) -> str:
        if self.workers <= 1:
            return "single worker"
        return f"this is {self.name}{' (chief)' if self.chief else ''}"


def make_strategy(kind: str, config: dict | None):
    """The strategy for ``--distribute kind``; refuses a cluster it cannot train on."""
    import tensorflow as tf

    workers = worker_count(config)
    if config and set(config["cluster"]) - {"chief", "worker"}:
        raise UsageError(
            f"the cluster names {sorted(set(config['cluster']) - {'chief', 'worker'})}: "
            "only chief and worker pools are supported (MultiWorkerMirroredStrategy)"
        )
    if kind == "auto":
        kind = "multiworker" if workers > 1 else "mirrored"
    if workers > 1 and kind != "multiworker":
        raise UsageError(
            f"TF_CONFIG names {workers} workers but --distribute {kind} runs on one machine"
        )
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multiworker":
        if config:
            os.environ["TF_CONFIG"] = json.dumps(config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")
    ]
    return tf.distribute.MirroredStrategy(devices)


def device_line(model: str) -> str:
    """What this job computes on, in one line the trainer logs at start whatever the verbosity (a
    quiet image otherwise shows nothing of it in Cloud Logging): the GPUs by model and count, the
    CUDA and cuDNN TensorFlow was built with, and the precision the ``--model`` trains in."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    precision = "mixed_float16" if gpus and model == "fast" else "float32"
    if not gpus:
        return f"devices: CPU only, no GPU visible (TensorFlow {tf.__version__}); precision {precision}"
    names = Counter(
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus
    )
    build = tf.sysconfig.get_build_info()
    shown = ", ".join(f"{count} x {name}" for name, count in names.items())
    return (
        f"devices: {len(gpus)} GPU(s): {shown}; CUDA {build.get('cuda_version', '?')}, cuDNN "
        f"{build.get('cudnn_version', '?')} (TensorFlow {tf.__version__}); precision {precision}"
    )


def strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default strategy (no distribution)"
