"""The Vertex AI request: a ``CustomJob`` built with google-cloud-aiplatform's own types, and
sending it.

:func:`build_request` makes a ``CreateCustomJobRequest`` from a checked
:class:`~cloud.plan.JobPlan`; ``--dry-run`` prints exactly that request as the REST body
(:func:`request_json`) and :func:`submit` sends exactly that request with
``JobServiceClient.create_custom_job``, so what is printed is what would be sent.
google-cloud-aiplatform (the ``cloud`` extra) is imported inside the functions that need it, so a
flag problem, ``--help`` or ``--kubernetes`` never loads it. Two facts the request relies on: the
image's ``ENTRYPOINT`` runs ``python -m trainer.task``, so the trainer's flags go into the
container's ``args`` and a ``command`` (which replaces the entry point) is set only for
``--gpu-check``; and several replicas are a chief pool of one plus a pool of the other workers, with
the same GPUs (the chief trains too), restarted together because a collective cannot go on with a
worker missing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud.plan import JobPlan


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
        return types.WorkerPoolSpec(
            machine_spec=machine, replica_count=replicas, container_spec=container
        )

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
    return types.CreateCustomJobRequest(
        parent=f"projects/{plan.project}/locations/{plan.region}", custom_job=job
    )


def request_json(request) -> str:
    """The request as the REST API's JSON body (camelCase, enums by name)."""
    return type(request).to_json(
        request, use_integers_for_enums=False, always_print_fields_with_no_presence=False, indent=2
    )


def submit(request, region: str):
    """Send the request to Vertex AI; returns the created ``CustomJob``."""
    from google.cloud import aiplatform_v1

    client = aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
    )
    return client.create_custom_job(request=request)


def console_url(job_name: str) -> str:
    match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/customJobs/([^/]+)", job_name)
    if not match:
        return ""
    project, region, job_id = match.groups()
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job_id}/cpu?project={project}"
