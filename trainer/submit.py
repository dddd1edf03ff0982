"""Submitting the training job: ``lstm-composer submit`` / ``python -m trainer.submit``.

::

    lstm-composer submit --project P --region R --image IMAGE [--machine-type g2-standard-8]
        [--accelerator-type T] [--accelerator-count N] [--replica-count M]
        [--base-output-dir gs://BUCKET/run] [--tensorboard ID --service-account SA] [--label k=v ...]
        [--spot] [--display-name NAME] [--gpu-check] [--dry-run | --kubernetes]
        -- TRAINER FLAGS (python -m trainer.task's own: --data-dir gs://... --epochs ...)

Builds a Vertex AI ``CustomJob`` with the library's own request types
(``google.cloud.aiplatform_v1.types.CreateCustomJobRequest``) and sends exactly that request with
``JobServiceClient.create_custom_job``; ``--dry-run`` prints it as JSON (the REST body) and sends
nothing. ``--kubernetes`` prints a Kubernetes Job manifest for a GKE GPU node pool instead
(``... --kubernetes | kubectl apply -f -``). google-cloud-aiplatform and PyYAML (the ``cloud`` extra)
are imported only here, only when needed.

Vertex AI facts this module builds on:

* The image's ``ENTRYPOINT ["python", "-m", "trainer.task"]`` runs the job; the trainer's flags go into
  the container spec's ``args``. A ``command`` would replace the entry point (and must be a list); it
  is set only for ``--gpu-check``, which runs ``python -m trainer.gpu_check`` on the same machine.
* ``base_output_directory`` (``--base-output-dir``, a ``gs://`` path) is what makes Vertex AI set
  ``AIP_MODEL_DIR`` = ``<dir>/model/``, ``AIP_CHECKPOINT_DIR`` = ``<dir>/checkpoints/`` and
  ``AIP_TENSORBOARD_LOG_DIR`` = ``<dir>/logs/``, which the trainer writes to. Without it the trainer
  needs its own ``--job-dir gs://...``; one of the two is required.
* ``--replica-count M`` > 1 makes a multi-worker job: worker pool 0 is the chief (1 replica), pool 1
  holds the other M-1 workers, both on the same machine type with the same GPUs, because under
  MultiWorkerMirroredStrategy the chief trains too. Vertex AI sets ``TF_CONFIG`` / ``CLUSTER_SPEC``;
  the trainer's ``--distribute auto`` picks MultiWorkerMirroredStrategy from them. All workers are
  restarted together when one restarts (``restart_job_on_worker_restart``): a collective cannot
  go on with a worker missing, and the restarted job resumes from the trainer's ``backup/``.
* A Vertex TensorBoard instance (``--tensorboard``) needs a service account (``--service-account``)
  and the base output directory (whose ``logs/`` it uploads continuously).
* ``--spot`` sets ``Scheduling.strategy = SPOT``; a pre-empted job is restarted and the trainer's
  pre-emption resume (its ``backup/`` under the checkpoint dir) continues with the next epoch.
* Accelerator-optimized machines (``a2-``, ``a3-``, ``a4-``, ``g2-``) come with a fixed number and kind
  of GPU; ``n1-`` machines take T4 / V100 / P100 / P4 in counts of 1, 2, 4 (and 8 for V100); other
  families take none. A count the machine cannot hold stops here, before any request.

Every problem with the flags stops with one line on stderr and exit status 2, before any request.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

PROG = "lstm-composer submit"
DEFAULT_MACHINE_TYPE = "g2-standard-8"
TRAINER_PORT = 2222  # MultiWorkerMirroredStrategy's gRPC port in the Kubernetes manifest


class SubmitError(ValueError):
    """A flag that cannot work; the message says why and what to do."""


# --------------------------------------------------------------------------- machines and GPUs

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


# --------------------------------------------------------------------------- flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Submit the training job (python -m trainer.task in the trainer image) to Vertex AI, "
        "or write a Kubernetes Job manifest for a GKE GPU node pool. The trainer's own flags follow '--'.",
        epilog="example: lstm-composer submit --project my-project --region us-central1 --image "
        "us-central1-docker.pkg.dev/my-project/lstm-composer/trainer:latest --base-output-dir "
        "gs://my-bucket/runs/1 -- --data-dir gs://my-bucket/records --epochs 50",
        allow_abbrev=False,
    )
    p.add_argument("--project", help="Google Cloud project ID (required for Vertex AI)")
    p.add_argument("--region", help="Vertex AI region, e.g. us-central1 (required for Vertex AI)")
    p.add_argument("--image", help="the trainer image, e.g. REGION-docker.pkg.dev/PROJECT/REPOSITORY/trainer:TAG (required)")
    p.add_argument("--machine-type", default=DEFAULT_MACHINE_TYPE,
                   help=f"machine type of every worker (default {DEFAULT_MACHINE_TYPE}: 1 NVIDIA L4)")
    p.add_argument("--accelerator-type", default=None, metavar="TYPE",
                   help="GPU type (default: the machine type's own; required for n1- machines): " + ", ".join(GPU_TYPES))
    p.add_argument("--accelerator-count", type=int, default=None, metavar="N",
                   help="GPUs per machine (default: all the machine type has; 1 on n1-)")
    p.add_argument("--replica-count", type=int, default=1, metavar="M",
                   help="machines; more than 1 is a multi-worker job (MultiWorkerMirroredStrategy): "
                   "a chief pool of 1 and a worker pool of M-1, all with the same GPUs")
    p.add_argument("--base-output-dir", default=None, metavar="gs://BUCKET/PATH",
                   help="Vertex AI sets AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR below it")
    p.add_argument("--tensorboard", default=None, metavar="ID",
                   help="a Vertex AI TensorBoard instance (ID or projects/.../locations/.../tensorboards/ID); "
                   "needs --service-account and --base-output-dir")
    p.add_argument("--service-account", default=None, metavar="EMAIL", help="the service account the job runs as")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a job label (repeatable)")
    p.add_argument("--spot", action="store_true",
                   help="run on Spot VMs (cheaper, pre-emptible; the trainer resumes from its backup)")
    p.add_argument("--display-name", default=None, help="job name (default lstm-composer-YYYYmmdd-HHMMSS)")
    p.add_argument("--gpu-check", action="store_true",
                   help="run the GPU smoke check (python -m trainer.gpu_check) on this machine type instead of training")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--dry-run", action="store_true", help="print the exact request (JSON) and submit nothing")
    out.add_argument("--kubernetes", action="store_true",
                     help="print a Kubernetes Job manifest for a GKE GPU node pool instead (kubectl apply -f -)")
    p.add_argument("--kubernetes-service-account", default=None, metavar="NAME",
                   help="with --kubernetes: the Kubernetes service account of the pods (Workload Identity for gs://)")
    p.add_argument("--namespace", default=None, help="with --kubernetes: the namespace (default: kubectl's)")
    return p


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our flags, and the trainer's (everything after the first ``--``)."""
    argv = list(argv)
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []


@dataclass
class JobPlan:
    """Everything a request or a manifest is made of, checked."""

    display_name: str
    image: str
    machine_type: str
    accelerator_type: str | None
    accelerator_count: int
    replica_count: int
    trainer_args: list[str]
    project: str | None = None
    region: str | None = None
    base_output_dir: str | None = None
    tensorboard: str | None = None
    service_account: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    spot: bool = False
    gpu_check: bool = False

    @property
    def command(self) -> list[str] | None:
        return ["python", "-m", "trainer.gpu_check"] if self.gpu_check else None

    @property
    def args(self) -> list[str]:
        if self.gpu_check:
            return ["--expect-gpus", str(max(1, self.accelerator_count))]
        return list(self.trainer_args)


_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_BUCKET_PATH = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def _gcs_dir(value: str, flag: str) -> str:
    if not _BUCKET_PATH.fullmatch(value):
        raise SubmitError(f"{flag} must be a gs:// path such as gs://my-bucket/lstm-composer/run-1, not {value!r}")
    return value.rstrip("/")


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise SubmitError(
                f"--label {item!r} is not KEY=VALUE with a lowercase key (letters, digits, _ and -, starting "
                "with a letter) and a value of lowercase letters, digits, _ and - (63 characters at most)"
            )
        labels[key] = value
    return labels


def parse_trainer_args(trainer_args: Sequence[str]) -> argparse.Namespace:
    """The trainer's flags, checked with the trainer's own parser (``trainer.task.build_parser``)."""
    from trainer import task

    parser = task.build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(list(trainer_args))
    except SystemExit:
        lines = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        reason = lines[-1].split("error:", 1)[1].strip() if lines else "invalid flags"
        raise SubmitError(f"the trainer's flags after '--' are not valid: {reason}") from None


def _remote(path: str) -> bool:
    return path.startswith("gs://") or path.startswith("/gcs/")


def plan_job(args: argparse.Namespace, trainer_args: list[str]) -> JobPlan:
    """Check every flag (ours and the trainer's) and return the job to build; raises SubmitError."""
    vertex = not args.kubernetes
    if vertex:
        missing = [flag for flag, value in (("--project", args.project), ("--region", args.region),
                                            ("--image", args.image)) if not value]
        if missing:
            raise SubmitError(f"missing {', '.join(missing)}: a Vertex AI job needs a project, a region and the trainer image")
        if not _PROJECT.fullmatch(args.project):
            raise SubmitError(f"--project {args.project!r} is not a project ID (6-30 lowercase letters, digits and hyphens)")
        if not _REGION.fullmatch(args.region):
            raise SubmitError(f"--region {args.region!r} is not a region such as us-central1 or europe-west4")
    elif not args.image:
        raise SubmitError("missing --image: the Kubernetes Job needs the trainer image")
    if any(c.isspace() for c in args.image):
        raise SubmitError(f"--image {args.image!r} contains spaces")
    if args.replica_count < 1:
        raise SubmitError(f"--replica-count must be at least 1, not {args.replica_count}")
    accelerator_type, accelerator_count = resolve_accelerators(
        args.machine_type, args.accelerator_type, args.accelerator_count
    )
    base = _gcs_dir(args.base_output_dir, "--base-output-dir") if args.base_output_dir else None

    tensorboard = None
    if args.tensorboard:
        if not vertex:
            raise SubmitError("--tensorboard is a Vertex AI TensorBoard instance; a Kubernetes job cannot use it")
        if not args.service_account:
            raise SubmitError("--tensorboard needs --service-account: Vertex AI uploads the logs as that service account")
        if not base:
            raise SubmitError("--tensorboard needs --base-output-dir: Vertex AI uploads the logs written to its logs/ folder")
        tensorboard = args.tensorboard
        if "/" not in tensorboard:
            tensorboard = f"projects/{args.project}/locations/{args.region}/tensorboards/{tensorboard}"
        match = re.fullmatch(r"projects/[^/]+/locations/([^/]+)/tensorboards/[^/]+", tensorboard)
        if not match:
            raise SubmitError(f"--tensorboard {args.tensorboard!r} is neither an ID nor projects/P/locations/R/tensorboards/ID")
        if match.group(1) != args.region:
            raise SubmitError(f"--tensorboard is in {match.group(1)} but the job runs in {args.region}: they must match")
    if args.service_account and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", args.service_account):
        raise SubmitError(f"--service-account {args.service_account!r} is not a service account e-mail")
    labels = parse_labels(args.label)

    if args.gpu_check:
        if trainer_args:
            raise SubmitError("--gpu-check runs python -m trainer.gpu_check, not training: leave out the trainer's flags after '--'")
        if not accelerator_count:
            raise SubmitError(f"--gpu-check needs a GPU, and {args.machine_type} is given none")
    else:
        if not trainer_args:
            raise SubmitError("the trainer's flags are missing: add them after '--', at least --data-dir gs://BUCKET/records")
        trainer = parse_trainer_args(trainer_args)
        if not _remote(trainer.data_dir):
            raise SubmitError(
                f"the trainer's --data-dir {trainer.data_dir!r} is not in Cloud Storage: the job's container can "
                "read only gs://... (or /gcs/...) paths; upload the records or run the pipeline on Dataflow"
            )
        if trainer.job_dir and not _remote(trainer.job_dir):
            raise SubmitError(f"the trainer's --job-dir {trainer.job_dir!r} must be a gs:// (or /gcs/) path: the container's disk is thrown away")
        if not trainer.job_dir and not base:
            raise SubmitError(
                "the job would write nowhere: give --base-output-dir gs://BUCKET/PATH (Vertex AI then sets "
                "AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR) or the trainer's --job-dir gs://... after '--'"
            )
        if args.replica_count > 1 and trainer.distribute in ("none", "mirrored"):
            raise SubmitError(
                f"--replica-count {args.replica_count} is a multi-worker job, but the trainer's --distribute "
                f"{trainer.distribute} trains on one machine; leave it at auto (or multiworker)"
            )
        replicas = args.replica_count * max(1, accelerator_count)
        if trainer.batch_size < replicas:
            raise SubmitError(
                f"the trainer's --batch-size {trainer.batch_size} is smaller than the {replicas} GPUs of the job: "
                "it is the global batch, split over every GPU; use at least one example per GPU"
            )

    display_name = args.display_name or time.strftime("lstm-composer-%Y%m%d-%H%M%S", time.gmtime())
    return JobPlan(
        display_name=display_name,
        image=args.image,
        machine_type=args.machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        replica_count=1 if args.gpu_check else args.replica_count,
        trainer_args=list(trainer_args),
        project=args.project,
        region=args.region,
        base_output_dir=base,
        tensorboard=tensorboard,
        service_account=args.service_account,
        labels=labels,
        spot=args.spot,
        gpu_check=args.gpu_check,
    )


# --------------------------------------------------------------------------- Vertex AI request


def build_request(plan: JobPlan):
    """The ``CreateCustomJobRequest`` (google-cloud-aiplatform's own type) for a checked plan."""
    from google.cloud.aiplatform_v1 import types

    machine = types.MachineSpec(machine_type=plan.machine_type)
    if plan.accelerator_count:
        machine.accelerator_type = types.AcceleratorType[plan.accelerator_type]
        machine.accelerator_count = plan.accelerator_count
    container = types.ContainerSpec(image_uri=plan.image, args=plan.args)
    if plan.command:
        container.command = plan.command  # replaces the image's ENTRYPOINT; a list, never a string

    def pool(replicas: int):
        return types.WorkerPoolSpec(machine_spec=machine, replica_count=replicas, container_spec=container)

    pools = [pool(1)]  # pool 0: the chief, which trains too
    if plan.replica_count > 1:
        pools.append(pool(plan.replica_count - 1))  # pool 1: the other workers, with the same GPUs
    spec = types.CustomJobSpec(worker_pool_specs=pools)
    if plan.base_output_dir:
        spec.base_output_directory = types.GcsDestination(output_uri_prefix=plan.base_output_dir)
    if plan.service_account:
        spec.service_account = plan.service_account
    if plan.tensorboard:
        spec.tensorboard = plan.tensorboard
    if plan.spot or plan.replica_count > 1:
        scheduling = types.Scheduling()
        if plan.spot:
            scheduling.strategy = types.Scheduling.Strategy.SPOT
        if plan.replica_count > 1:
            scheduling.restart_job_on_worker_restart = True
        spec.scheduling = scheduling
    job = types.CustomJob(display_name=plan.display_name, job_spec=spec, labels=plan.labels)
    return types.CreateCustomJobRequest(parent=f"projects/{plan.project}/locations/{plan.region}", custom_job=job)


def request_json(request) -> str:
    """The request as the REST API's JSON body (camelCase, enums by name)."""
    return type(request).to_json(
        request, use_integers_for_enums=False, always_print_fields_with_no_presence=False, indent=2
    )


def submit(request, region: str):
    """Send the request to Vertex AI; returns the created ``CustomJob``."""
    from google.cloud import aiplatform_v1

    client = aiplatform_v1.JobServiceClient(client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    return client.create_custom_job(request=request)


def console_url(job_name: str) -> str:
    match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/customJobs/([^/]+)", job_name)
    if not match:
        return ""
    project, region, job_id = match.groups()
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job_id}/cpu?project={project}"


# --------------------------------------------------------------------------- Kubernetes manifest


def k8s_name(display_name: str) -> str:
    """A DNS-1123 name from the display name (pods of an indexed job append -INDEX; keep room)."""
    name = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")
    return (name[:52].rstrip("-") or "lstm-composer")


def kubernetes_manifest(plan: JobPlan, namespace: str | None = None, service_account: str | None = None) -> list[dict]:
    """A Job (plus a headless Service for several workers) for a GKE GPU node pool."""
    name = k8s_name(plan.display_name)
    labels = {"app.kubernetes.io/name": "lstm-composer", "app.kubernetes.io/component": "trainer", **plan.labels}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
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
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],  # NCCL needs more than the default 64 MiB
    }
    if plan.command:
        container["command"] = plan.command
    node_selector: dict[str, str] = {}
    tolerations: list[dict] = []
    if plan.accelerator_count:
        container["resources"] = {"limits": {"nvidia.com/gpu": plan.accelerator_count}}
        node_selector["cloud.google.com/gke-accelerator"] = GKE_ACCELERATOR[plan.accelerator_type]
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if plan.spot:
        node_selector["cloud.google.com/gke-spot"] = "true"
        tolerations.append({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    documents: list[dict] = []
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
    job_spec: dict[str, Any] = {"backoffLimit": 3, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}
    if plan.replica_count > 1:
        # One pod per worker, each with a stable DNS name NAME-INDEX.NAME through a headless Service;
        # TF_CONFIG is made at start from the pod's JOB_COMPLETION_INDEX (worker 0 is the chief).
        workers = [f"{name}-{i}.{name}:{TRAINER_PORT}" for i in range(plan.replica_count)]
        env.append({"name": "TF_CLUSTER", "value": json.dumps({"worker": workers})})
        container["command"] = [
            "/bin/sh", "-c",
            'export TF_CONFIG="{\\"cluster\\": $TF_CLUSTER, \\"task\\": {\\"type\\": \\"worker\\", '
            '\\"index\\": $JOB_COMPLETION_INDEX}}"; exec python -m trainer.task "$@"',
            "trainer.task",
        ]
        container["ports"] = [{"containerPort": TRAINER_PORT, "name": "tf-worker"}]
        pod_spec["subdomain"] = name
        job_spec.update(completionMode="Indexed", completions=plan.replica_count, parallelism=plan.replica_count)
        service_metadata = {k: v for k, v in metadata.items()}
        documents.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": service_metadata,
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"batch.kubernetes.io/job-name": name},
                "ports": [{"name": "tf-worker", "port": TRAINER_PORT}],
            },
        })
    if env:
        container["env"] = env
    documents.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec})
    return documents


def manifest_yaml(documents: list[dict]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # plain YAML, no &anchors / *aliases for repeated label maps
            return True

    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------- entry point


def _describe(plan: JobPlan) -> str:
    gpus = f"{plan.accelerator_count} x {plan.accelerator_type}" if plan.accelerator_count else "no GPU"
    machines = f"{plan.replica_count} machines" if plan.replica_count > 1 else "1 machine"
    return f"{machines} of {plan.machine_type} with {gpus}" + (" on Spot VMs" if plan.spot else "")


def main(argv: Sequence[str] | None = None) -> int:
    own, trainer_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(own)
    except SystemExit as exc:  # argparse printed usage and one "error:" line (or --help)
        return int(exc.code or 0)
    try:
        plan = plan_job(args, trainer_args)
        if args.kubernetes:
            sys.stdout.write(manifest_yaml(kubernetes_manifest(plan, args.namespace, args.kubernetes_service_account)))
            return 0
        request = build_request(plan)
    except SubmitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # the `cloud` extra: google-cloud-aiplatform, PyYAML
        print(f"{PROG}: error: {exc.name or exc} is not installed: python -m pip install 'lstm-composer[cloud]'",
              file=sys.stderr)
        return 2
    if args.dry_run:
        print(request_json(request))
        print(f"{PROG}: dry run, nothing submitted ({_describe(plan)})", file=sys.stderr)
        return 0
    try:
        job = submit(request, plan.region)
    except Exception as exc:  # noqa: BLE001 - google-auth / google-api-core errors, reported in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if type(exc).__name__ == "DefaultCredentialsError":
            message += " (run: gcloud auth application-default login)"
        print(f"{PROG}: error: Vertex AI did not accept the job: {message}", file=sys.stderr)
        return 1
    print(f"submitted {job.name} ({_describe(plan)})")
    url = console_url(job.name)
    if url:
        print(f"  console: {url}")
    print(f"  logs:    gcloud ai custom-jobs stream-logs {job.name.rsplit('/', 1)[-1]} --region {plan.region}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
