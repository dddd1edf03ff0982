"""The Kubernetes Job for a GKE GPU node pool:
``lstm-composer submit --kubernetes | kubectl apply -f -``.

:func:`kubernetes_manifest` writes the same job as the Vertex AI request from the same checked
:class:`~cloud.plan.JobPlan`: the trainer image with the trainer's flags, the GPUs as
``nvidia.com/gpu`` limits on a node pool chosen by its ``cloud.google.com/gke-accelerator`` label,
and ``--base-output-dir`` as the ``AIP_*`` variables Vertex AI would set, so the trainer writes the
same layout on both. Several replicas become an Indexed Job plus a headless Service: each pod has
the stable name ``NAME-INDEX.NAME`` and makes its ``TF_CONFIG`` at start from
``JOB_COMPLETION_INDEX`` (worker 0 is the chief), which is what MultiWorkerMirroredStrategy reads.
PyYAML (the ``cloud`` extra) is imported only when the manifest is printed.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from cloud.machines import GKE_ACCELERATOR

if TYPE_CHECKING:
    from cloud.plan import JobPlan

TRAINER_PORT = 2222  # MultiWorkerMirroredStrategy's gRPC port in the Kubernetes manifest


def k8s_name(display_name: str) -> str:
    """A DNS-1123 name from the display name (pods of an indexed job append -INDEX; keep room)."""
    name = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")
    return name[:52].rstrip("-") or "lstm-composer"


def kubernetes_manifest(
    plan: JobPlan, namespace: str | None = None, service_account: str | None = None
) -> list[dict]:
    """A Job (plus a headless Service for several workers) for a GKE GPU node pool."""
    name = k8s_name(plan.display_name)
    labels = {
        "app.kubernetes.io/name": "lstm-composer",
        "app.kubernetes.io/component": "trainer",
        **plan.labels,
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    container, env = trainer_container(plan)
    pod_spec = pod_spec_for(plan, container, service_account)
    job_spec: dict[str, Any] = {
        "backoffLimit": 3,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    documents: list[dict] = []
    if plan.replica_count > 1:
        documents.append(
            make_multi_worker(plan, name, metadata, container, env, pod_spec, job_spec)
        )
    if env:
        container["env"] = env
    documents.append(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
    )
    return documents


def trainer_container(plan: JobPlan) -> tuple[dict[str, Any], list[dict]]:
    """The trainer's container (image, arguments, GPUs) and its environment (the AIP_* folders of
    the output layout), which the caller adds last."""
    env: list[dict] = []
    if plan.base_output_dir:  # the same layout as Vertex AI's
        env += [
            {"name": "AIP_MODEL_DIR", "value": f"{plan.base_output_dir}/model/"},
            {"name": "AIP_CHECKPOINT_DIR", "value": f"{plan.base_output_dir}/checkpoints/"},
            {"name": "AIP_TENSORBOARD_LOG_DIR", "value": f"{plan.base_output_dir}/logs/"},
        ]
    container: dict[str, Any] = {
        "name": "trainer",
        "image": plan.image,
        "args": plan.args,
        "securityContext": {"allowPrivilegeEscalation": False},
        # NCCL needs more than the default 64 MiB
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if plan.command:
        container["command"] = plan.command
    if plan.accelerator_count:
        container["resources"] = {"limits": {"nvidia.com/gpu": plan.accelerator_count}}
    return container, env


def pod_spec_for(
    plan: JobPlan, container: dict[str, Any], service_account: str | None
) -> dict[str, Any]:
    """The pod: non-root, shared memory for NCCL, on a GPU (and Spot) node pool when asked."""
    node_selector: dict[str, str] = {}
    tolerations: list[dict] = []
    if plan.accelerator_count:
        node_selector["cloud.google.com/gke-accelerator"] = GKE_ACCELERATOR[plan.accelerator_type]
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if plan.spot:
        node_selector["cloud.google.com/gke-spot"] = "true"
        tolerations.append(
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000},
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return pod_spec


def make_multi_worker(
    plan: JobPlan,
    name: str,
    metadata: dict[str, Any],
    container: dict[str, Any],
    env: list[dict],
    pod_spec: dict[str, Any],
    job_spec: dict[str, Any],
) -> dict:
    """Several workers: one pod each (an Indexed Job), each with a stable DNS name NAME-INDEX.NAME
    through a headless Service (returned); TF_CONFIG is made at start from the pod's
    JOB_COMPLETION_INDEX (worker 0 is the chief)."""
    workers = [f"{name}-{i}.{name}:{TRAINER_PORT}" for i in range(plan.replica_count)]
    env.append({"name": "TF_CLUSTER", "value": json.dumps({"worker": workers})})
    container["command"] = [
        "/bin/sh",
        "-c",
        'export TF_CONFIG="{\\"cluster\\": $TF_CLUSTER, \\"task\\": {\\"type\\": \\"worker\\", '
        '\\"index\\": $JOB_COMPLETION_INDEX}}"; exec python -m trainer.task "$@"',
        "trainer.task",
    ]
    container["ports"] = [{"containerPort": TRAINER_PORT, "name": "tf-worker"}]
    pod_spec["subdomain"] = name
    job_spec.update(
        completionMode="Indexed", completions=plan.replica_count, parallelism=plan.replica_count
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(metadata),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": name},
            "ports": [{"name": "tf-worker", "port": TRAINER_PORT}],
        },
    }


def manifest_yaml(documents: list[dict]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        # plain YAML, no &anchors / *aliases for repeated label maps
        def ignore_aliases(self, data):
            return True

    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, default_flow_style=False)
