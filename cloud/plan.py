"""The checked job: every flag of ``lstm-composer submit`` and every trainer flag after ``--``.

:func:`plan_job` turns the parsed flags into a :class:`JobPlan`, the one thing a Vertex AI request
(``cloud.vertex``) and a Kubernetes manifest (``cloud.kubernetes``) are both built from, so both get
the same checks: a missing project, region or image, a machine that cannot hold the GPUs, an output
that is not in Cloud Storage, a trainer flag its own parser refuses. Each stops with one
:class:`SubmitError` before any request. The trainer's flags are checked with the trainer's own
parser (``trainer.flags``, which imports no TensorFlow), because a job that cannot parse its
arguments would fail only after its machines had started. The job's container can read and write
only Cloud Storage (``gs://...``, or Vertex AI's ``/gcs/...`` mount): its own disk is thrown away
when the job ends.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud.machines import SubmitError, resolve_accelerators
from trainer import flags


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
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def bucket_problem(bucket: str) -> str | None:
    """What makes ``bucket`` a name Cloud Storage refuses (its naming rules for characters, ends and
    length), or None. The rules about IP-like names and "goog" are left to Cloud Storage itself."""
    if re.search(r"[^a-z0-9._-]", bucket):
        return "bucket names use only lowercase letters, digits, '-', '_' and '.'"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "bucket names start and end with a letter or a digit"
    longest = 222 if "." in bucket else 63
    if not 3 <= len(bucket) <= longest or any(len(part) > 63 for part in bucket.split(".")):
        return "bucket names are 3-63 characters (up to 222 with dots, at most 63 between two dots)"
    return None


def _gcs_dir(value: str, flag: str) -> str:
    if not value.startswith("gs://"):
        raise SubmitError(
            f"{flag} must be a gs:// path such as gs://my-bucket/lstm-composer/run-1, not {value!r}"
        )
    bucket = value[len("gs://") :].split("/", 1)[0]
    if not bucket:
        raise SubmitError(
            f"{flag} {value!r} names no bucket: give a path such as gs://my-bucket/lstm-composer/run-1"
        )
    problem = bucket_problem(bucket)
    if problem:
        raise SubmitError(
            f"{flag} {value!r}: {bucket!r} cannot be a Cloud Storage bucket: {problem}"
        )
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
    """The trainer's flags, checked with the trainer's own parser
    (``trainer.flags.build_parser``)."""
    parser = flags.build_parser()
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
    check_target(args)
    accelerator_type, accelerator_count = resolve_accelerators(
        args.machine_type, args.accelerator_type, args.accelerator_count
    )
    base = _gcs_dir(args.base_output_dir, "--base-output-dir") if args.base_output_dir else None
    tensorboard = resolve_tensorboard(args, base)
    if args.service_account and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", args.service_account):
        raise SubmitError(
            f"--service-account {args.service_account!r} is not a service account e-mail"
        )
    labels = parse_labels(args.label)
    if args.gpu_check:
        check_gpu_check(args, trainer_args, accelerator_count)
    else:
        check_training(args, trainer_args, accelerator_count, base)
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


def check_target(args: argparse.Namespace) -> None:
    """Where the job runs: a Vertex AI project and region, or a cluster; the image; the replicas."""
    if not args.kubernetes:
        missing = [
            flag
            for flag, value in (
                ("--project", args.project),
                ("--region", args.region),
                ("--image", args.image),
            )
            if not value
        ]
        if missing:
            raise SubmitError(
                f"missing {', '.join(missing)}: a Vertex AI job needs a project, a region and the trainer image"
            )
        if not _PROJECT.fullmatch(args.project):
            raise SubmitError(
                f"--project {args.project!r} is not a project ID (6-30 lowercase letters, digits and hyphens)"
            )
        if not _REGION.fullmatch(args.region):
            raise SubmitError(
                f"--region {args.region!r} is not a region such as us-central1 or europe-west4"
            )
    elif not args.image:
        raise SubmitError("missing --image: the Kubernetes Job needs the trainer image")
    if any(c.isspace() for c in args.image):
        raise SubmitError(f"--image {args.image!r} contains spaces")
    if args.replica_count < 1:
        raise SubmitError(f"--replica-count must be at least 1, not {args.replica_count}")


def resolve_tensorboard(args: argparse.Namespace, base: str | None) -> str | None:
    """The Vertex AI TensorBoard instance's full name (an ID is completed), or None."""
    if not args.tensorboard:
        return None
    if args.kubernetes:
        raise SubmitError(
            "--tensorboard is a Vertex AI TensorBoard instance; a Kubernetes job cannot use it"
        )
    if not args.service_account:
        raise SubmitError(
            "--tensorboard needs --service-account: Vertex AI uploads the logs as that service account"
        )
    if not base:
        raise SubmitError(
            "--tensorboard needs --base-output-dir: Vertex AI uploads the logs written to its logs/ folder"
        )
    tensorboard = args.tensorboard
    if "/" not in tensorboard:
        tensorboard = f"projects/{args.project}/locations/{args.region}/tensorboards/{tensorboard}"
    match = re.fullmatch(r"projects/[^/]+/locations/([^/]+)/tensorboards/[^/]+", tensorboard)
    if not match:
        raise SubmitError(
            f"--tensorboard {args.tensorboard!r} is neither an ID nor projects/P/locations/R/tensorboards/ID"
        )
    if match.group(1) != args.region:
        raise SubmitError(
            f"--tensorboard is in {match.group(1)} but the job runs in {args.region}: they must match"
        )
    return tensorboard


def check_gpu_check(
    args: argparse.Namespace, trainer_args: list[str], accelerator_count: int
) -> None:
    """``--gpu-check`` runs the image's GPU smoke check: no trainer flags, and a GPU to check."""
    if trainer_args:
        raise SubmitError(
            "--gpu-check runs python -m trainer.gpu_check, not training: leave out the trainer's flags after '--'"
        )
    if not accelerator_count:
        raise SubmitError(f"--gpu-check needs a GPU, and {args.machine_type} is given none")


def check_training(
    args: argparse.Namespace, trainer_args: list[str], accelerator_count: int, base: str | None
) -> None:
    """The trainer's flags, with the trainer's own parser, and what the cloud adds: paths in Cloud
    Storage, a distribution that matches the replicas, a global batch of at least one per GPU."""
    if not trainer_args:
        raise SubmitError(
            "the trainer's flags are missing: add them after '--', at least --data-dir gs://BUCKET/records"
        )
    trainer = parse_trainer_args(trainer_args)
    if not _remote(trainer.data_dir):
        raise SubmitError(
            f"the trainer's --data-dir {trainer.data_dir!r} is not in Cloud Storage: the job's container can "
            "read only gs://... (or /gcs/...) paths; upload the records or run the pipeline on Dataflow"
        )
    if trainer.job_dir and not _remote(trainer.job_dir):
        raise SubmitError(
            f"the trainer's --job-dir {trainer.job_dir!r} must be a gs:// (or /gcs/) path: the container's disk is thrown away"
        )
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
