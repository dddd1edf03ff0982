"""The command line of ``lstm-composer submit`` (also ``python -m cloud.cli``).

::

    lstm-composer submit --project P --region R --image IMAGE [--machine-type g2-standard-8]
        [--accelerator-type T] [--accelerator-count N] [--replica-count M]
        [--base-output-dir gs://BUCKET/run] [--tensorboard ID --service-account SA]
        [--label k=v ...]
        [--spot] [--display-name NAME] [--gpu-check] [--dry-run | --kubernetes]
        -- TRAINER FLAGS (python -m trainer.task's own: --data-dir gs://... --epochs ...)

Everything before ``--`` is this command's, everything after it goes unchanged to the trainer in the
job. :func:`main` checks both (``cloud.plan``), then sends the Vertex AI request (``cloud.vertex``),
prints it with ``--dry-run``, or prints a Kubernetes manifest with ``--kubernetes``
(``cloud.kubernetes``). Every problem with the flags, and a missing ``cloud`` extra, stops with one
line on stderr and exit status 2 before any request; a request Vertex AI refuses is one line and
status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cloud import kubernetes, vertex
from cloud.machines import DEFAULT_MACHINE_TYPE, GPU_TYPES, SubmitError
from cloud.plan import JobPlan, plan_job
from preprocessing import quiet
from preprocessing.messages import first_line

PROG = "lstm-composer submit"


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
    add_where_flags(p)
    p.add_argument(
        "--display-name", default=None, help="job name (default lstm-composer-YYYYmmdd-HHMMSS)"
    )
    p.add_argument(
        "--gpu-check",
        action="store_true",
        help="run the GPU smoke check (python -m trainer.gpu_check) on this machine type instead of training",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--dry-run", action="store_true", help="print the exact request (JSON) and submit nothing"
    )
    out.add_argument(
        "--kubernetes",
        action="store_true",
        help="print a Kubernetes Job manifest for a GKE GPU node pool instead (kubectl apply -f -)",
    )
    p.add_argument(
        "--kubernetes-service-account",
        default=None,
        metavar="NAME",
        help="with --kubernetes: the Kubernetes service account of the pods (Workload Identity for gs://)",
    )
    p.add_argument(
        "--namespace", default=None, help="with --kubernetes: the namespace (default: kubectl's)"
    )
    quiet.add_verbose_flag(p)
    return p


def add_where_flags(p: argparse.ArgumentParser) -> None:
    """Where and on what the job runs: project, region, image, machines and GPUs, outputs,
    identity."""
    p.add_argument("--project", help="Google Cloud project ID (required for Vertex AI)")
    p.add_argument("--region", help="Vertex AI region, e.g. us-central1 (required for Vertex AI)")
    p.add_argument(
        "--image",
        help="the trainer image, e.g. REGION-docker.pkg.dev/PROJECT/REPOSITORY/trainer:TAG (required)",
    )
    p.add_argument(
        "--machine-type",
        default=DEFAULT_MACHINE_TYPE,
        help=f"machine type of every worker (default {DEFAULT_MACHINE_TYPE}: 1 NVIDIA L4)",
    )
    p.add_argument(
        "--accelerator-type",
        default=None,
        metavar="TYPE",
        help="GPU type (default: the machine type's own; required for n1- machines): "
        + ", ".join(GPU_TYPES),
    )
    p.add_argument(
        "--accelerator-count",
        type=int,
        default=None,
        metavar="N",
        help="GPUs per machine (default: all the machine type has; 1 on n1-)",
    )
    p.add_argument(
        "--replica-count",
        type=int,
        default=1,
        metavar="M",
        help="machines; more than 1 is a multi-worker job (MultiWorkerMirroredStrategy): "
        "a chief pool of 1 and a worker pool of M-1, all with the same GPUs",
    )
    p.add_argument(
        "--base-output-dir",
        default=None,
        metavar="gs://BUCKET/PATH",
        help="Vertex AI sets AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR below it",
    )
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="ID",
        help="a Vertex AI TensorBoard instance (ID or projects/.../locations/.../tensorboards/ID); "
        "needs --service-account and --base-output-dir",
    )
    p.add_argument(
        "--service-account",
        default=None,
        metavar="EMAIL",
        help="the service account the job runs as",
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a job label (repeatable)"
    )
    p.add_argument(
        "--spot",
        action="store_true",
        help="run on Spot VMs (cheaper, pre-emptible; the trainer resumes from its backup)",
    )


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our flags, and the trainer's (everything after the first ``--``)."""
    argv = list(argv)
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def _describe(plan: JobPlan) -> str:
    gpus = (
        f"{plan.accelerator_count} x {plan.accelerator_type}"
        if plan.accelerator_count
        else "no GPU"
    )
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
            documents = kubernetes.kubernetes_manifest(
                plan, args.namespace, args.kubernetes_service_account
            )
            sys.stdout.write(kubernetes.manifest_yaml(documents))
            return 0
        request = vertex.build_request(plan)
    except SubmitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # the `cloud` extra: google-cloud-aiplatform, PyYAML
        print(
            f"{PROG}: error: {exc.name or exc} is not installed: python -m pip install 'lstm-composer[cloud]'",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        print(vertex.request_json(request))
        print(f"{PROG}: dry run, nothing submitted ({_describe(plan)})", file=sys.stderr)
        return 0
    try:
        job = vertex.submit(request, plan.region)
    except Exception as exc:  # noqa: BLE001 - google-auth / google-api-core errors, reported in one line
        # str(exc), not its .message: google-api-core's str() leads with the HTTP status ("403
        # ...").
        message = first_line(str(exc).strip() or type(exc).__name__)
        if type(exc).__name__ == "DefaultCredentialsError":
            message += " (run: gcloud auth application-default login)"
        print(f"{PROG}: error: Vertex AI did not accept the job: {message}", file=sys.stderr)
        return 1
    print(f"submitted {job.name} ({_describe(plan)})")
    url = vertex.console_url(job.name)
    if url:
        print(f"  console: {url}")
    print(
        f"  logs:    gcloud ai custom-jobs stream-logs {job.name.rsplit('/', 1)[-1]} --region {plan.region}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
