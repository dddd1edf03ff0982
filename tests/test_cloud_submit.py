"""``cloud`` (``lstm-composer submit``): Vertex AI requests built with google-cloud-aiplatform's
own types, the Kubernetes manifest parsed back, and every flag problem stopped with one clear
line before any request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.cloud.aiplatform_v1 import types

from cloud import cli, plan
from cloud import vertex as vertex_ai  # vertex() below builds a Vertex AI command line
from trainer import distribute, job_dir

PROJECT, REGION = "my-project-123", "us-central1"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/lstm-composer/trainer:abc1234"
BASE = "gs://my-bucket/runs/run-1"
SA = f"trainer@{PROJECT}.iam.gserviceaccount.com"
TRAINER = ["--data-dir", "gs://my-bucket/records", "--epochs", "20", "--batch-size", "256"]


def vertex(*flags: str) -> list[str]:
    return [
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--image",
        IMAGE,
        "--display-name",
        "test-job",
        *flags,
    ]


def dry_run(argv: list[str], capsys) -> tuple[types.CreateCustomJobRequest, str]:
    """Run main(... --dry-run); parse what it printed back into the library's request type
    (strictly)."""
    code = cli.main(
        argv[: argv.index("--")] + ["--dry-run"] + argv[argv.index("--") :]
        if "--" in argv
        else argv + ["--dry-run"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    request = types.CreateCustomJobRequest.from_json(out, ignore_unknown_fields=False)
    return request, err


def built(argv: list[str]) -> types.CreateCustomJobRequest:
    own, trainer_args = cli.split_argv(argv)
    return vertex_ai.build_request(plan.plan_job(cli.build_parser().parse_args(own), trainer_args))


# --------------------------------------------------------------------------- the three shapes


def test_one_gpu(capsys):
    argv = vertex("--base-output-dir", BASE, "--") + TRAINER
    request, err = dry_run(argv, capsys)
    assert request == built(argv)  # what was printed is exactly what would be sent
    assert request.parent == f"projects/{PROJECT}/locations/{REGION}"
    job = request.custom_job
    assert job.display_name == "test-job"
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1
    assert pool.machine_spec.machine_type == "g2-standard-8"
    assert pool.machine_spec.accelerator_type == types.AcceleratorType.NVIDIA_L4
    assert pool.machine_spec.accelerator_count == 1
    assert pool.container_spec.image_uri == IMAGE
    # the image's ENTRYPOINT runs python -m trainer.task
    assert list(pool.container_spec.command) == []
    assert list(pool.container_spec.args) == TRAINER
    # -> AIP_MODEL_DIR and friends
    assert job.job_spec.base_output_directory.output_uri_prefix == BASE
    assert "1 machine of g2-standard-8 with 1 x NVIDIA_L4" in err


def test_four_gpus_on_one_machine_n1_with_t4(capsys):
    argv = (
        vertex(
            "--machine-type",
            "n1-standard-16",
            "--accelerator-type",
            "NVIDIA_TESLA_T4",
            "--accelerator-count",
            "4",
            "--base-output-dir",
            BASE,
            "--",
        )
        + TRAINER
    )
    request, _ = dry_run(argv, capsys)
    (pool,) = request.custom_job.job_spec.worker_pool_specs
    assert pool.machine_spec.accelerator_type == types.AcceleratorType.NVIDIA_TESLA_T4
    assert pool.machine_spec.accelerator_count == 4
    assert pool.replica_count == 1
    # on demand, one machine
    assert "scheduling" not in json.loads(vertex_ai.request_json(request))["customJob"]["jobSpec"]


def test_two_machines_with_four_gpus_each(capsys):
    argv = (
        vertex(
            "--machine-type",
            "a2-highgpu-4g",
            "--replica-count",
            "2",
            "--base-output-dir",
            BASE,
            "--tensorboard",
            "4242",
            "--service-account",
            SA,
            "--label",
            "team=music",
            "--spot",
            "--",
        )
        + TRAINER
    )
    request, err = dry_run(argv, capsys)
    spec = request.custom_job.job_spec
    chief, workers = spec.worker_pool_specs
    assert chief.replica_count == 1 and workers.replica_count == 1
    for pool in (chief, workers):  # the chief trains too: same machine, same GPUs
        assert pool.machine_spec.machine_type == "a2-highgpu-4g"
        assert pool.machine_spec.accelerator_type == types.AcceleratorType.NVIDIA_TESLA_A100
        assert pool.machine_spec.accelerator_count == 4
        assert list(pool.container_spec.args) == TRAINER
    assert spec.scheduling.strategy == types.Scheduling.Strategy.SPOT
    assert spec.scheduling.restart_job_on_worker_restart is True
    assert spec.tensorboard == f"projects/{PROJECT}/locations/{REGION}/tensorboards/4242"
    assert spec.service_account == SA
    assert dict(request.custom_job.labels) == {"team": "music"}
    assert "2 machines of a2-highgpu-4g with 4 x NVIDIA_TESLA_A100 on Spot VMs" in err


def test_three_machines_make_a_chief_and_a_pool_of_two():
    request = built(
        vertex(
            "--machine-type",
            "a2-highgpu-8g",
            "--replica-count",
            "3",
            "--base-output-dir",
            BASE,
            "--",
        )
        + TRAINER
    )
    assert [p.replica_count for p in request.custom_job.job_spec.worker_pool_specs] == [1, 2]
    assert request.custom_job.job_spec.worker_pool_specs[0].machine_spec.accelerator_count == 8


def test_the_trainer_reads_vertex_cluster_spec_of_that_job_as_multi_worker():
    """What Vertex AI sets for a chief + worker pool job is what trainer.task reads as 2 workers."""
    cluster_spec = {
        "cluster": {
            "workerpool0": ["cmle-training-workerpool0-1:2222"],
            "workerpool1": ["cmle-training-workerpool1-0:2222"],
        },
        "task": {"type": "workerpool1", "index": 0},
    }
    config = distribute.cluster_config({"CLUSTER_SPEC": json.dumps(cluster_spec)})
    assert distribute.worker_count(config) == 2 and not distribute.is_chief(config)


def test_gpu_check_job_overrides_the_entry_point_with_a_list(capsys):
    request, _ = dry_run(vertex("--machine-type", "a2-highgpu-8g", "--gpu-check"), capsys)
    (pool,) = request.custom_job.job_spec.worker_pool_specs
    assert list(pool.container_spec.command) == ["python", "-m", "trainer.gpu_check"]
    assert list(pool.container_spec.args) == ["--expect-gpus", "8"]


def test_job_dir_instead_of_base_output_dir(capsys):
    request, _ = dry_run(
        vertex("--") + ["--data-dir", "gs://b/records", "--job-dir", "gs://b/job"], capsys
    )
    assert not request.custom_job.job_spec.base_output_directory.output_uri_prefix


def test_printed_json_is_the_rest_body():
    request = built(vertex("--base-output-dir", BASE, "--") + TRAINER)
    body = json.loads(vertex_ai.request_json(request))
    pool = body["customJob"]["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_L4"  # enums by name, camelCase fields
    assert body["customJob"]["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": BASE}


def test_submit_sends_exactly_the_built_request(monkeypatch, capsys):
    sent = {}

    def fake_submit(request, region):
        sent["request"], sent["region"] = request, region
        return types.CustomJob(name=f"projects/{PROJECT}/locations/{REGION}/customJobs/123")

    monkeypatch.setattr(vertex_ai, "submit", fake_submit)
    argv = vertex("--base-output-dir", BASE, "--") + TRAINER
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert sent["request"] == built(argv) and sent["region"] == REGION
    assert (
        "customJobs/123" in out
        and "console.cloud.google.com/vertex-ai/locations/us-central1/training/123" in out
    )


# --------------------------------------------------------------------------- Kubernetes


def kube(argv: list[str], capsys) -> list[dict]:
    assert cli.main(argv) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


def test_kubernetes_job_for_one_machine(capsys):
    docs = kube(
        [
            "--kubernetes",
            "--image",
            IMAGE,
            "--machine-type",
            "a2-highgpu-8g",
            "--display-name",
            "Run 1",
            "--base-output-dir",
            BASE,
            "--kubernetes-service-account",
            "trainer",
            "--",
        ]
        + TRAINER,
        capsys,
    )
    (job,) = docs
    assert (
        job["apiVersion"] == "batch/v1"
        and job["kind"] == "Job"
        and job["metadata"]["name"] == "run-1"
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (
        container["image"] == IMAGE and container["args"] == TRAINER and "command" not in container
    )
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and pod["securityContext"]["runAsUser"] == 1000
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "AIP_MODEL_DIR": f"{BASE}/model/",
        "AIP_CHECKPOINT_DIR": f"{BASE}/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": f"{BASE}/logs/",
    }
    assert job_dir.resolve_layout(None, env).model == f"{BASE}/model"


def test_kubernetes_multi_worker_indexed_job_builds_tf_config(capsys, tmp_path):
    docs = kube(
        [
            "--kubernetes",
            "--image",
            IMAGE,
            "--machine-type",
            "g2-standard-48",
            "--replica-count",
            "2",
            "--display-name",
            "big",
            "--spot",
            "--",
        ]
        + TRAINER
        + ["--job-dir", "gs://b/job"],
        capsys,
    )
    service, job = docs
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "big"}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "big"  # pods are big-0.big and big-1.big
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-spot": "true",
    }
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    env = {e["name"]: e["value"] for e in container["env"]}

    # Run the container's command with /bin/sh, as the pod would, with a stand-in "python" that
    # prints the TF_CONFIG and the arguments it got: the trainer must read worker 1 of 2, not the
    # chief.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$TF_CONFIG"\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    result = subprocess.run(
        container["command"] + container["args"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": f"{tmp_path}:/usr/bin:/bin",
            "TF_CLUSTER": env["TF_CLUSTER"],
            "JOB_COMPLETION_INDEX": "1",
        },
    )
    tf_config_line, *args = result.stdout.splitlines()
    assert args == ["-m", "trainer.task"] + container["args"]
    config = distribute.cluster_config({"TF_CONFIG": tf_config_line})
    assert config["cluster"] == {"worker": ["big-0.big:2222", "big-1.big:2222"]}
    assert distribute.worker_count(config) == 2 and not distribute.is_chief(config)
    assert distribute.is_chief({**config, "task": {"type": "worker", "index": 0}})


# ----------------------------------------------------------------- clear errors, before any request


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--region", REGION, "--image", IMAGE, "--"] + TRAINER, "missing --project"),
        (["--project", PROJECT, "--"] + TRAINER, "missing --region, --image"),
        (
            ["--project", "My Project", "--region", REGION, "--image", IMAGE, "--"] + TRAINER,
            "is not a project ID",
        ),
        (
            vertex(
                "--machine-type",
                "a2-highgpu-1g",
                "--accelerator-count",
                "8",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "--accelerator-count 8 does not fit a2-highgpu-1g: it holds exactly 1 NVIDIA_TESLA_A100 GPU(s); for 8, use a2-highgpu-8g",
        ),
        (
            vertex(
                "--machine-type",
                "g2-standard-8",
                "--accelerator-count",
                "2",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "does not fit g2-standard-8: it holds exactly 1 NVIDIA_L4",
        ),
        (
            vertex(
                "--machine-type",
                "n1-standard-8",
                "--accelerator-type",
                "NVIDIA_TESLA_T4",
                "--accelerator-count",
                "8",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "--accelerator-count 8 does not fit n1-standard-8: an N1 machine holds 1, 2, 4 NVIDIA_TESLA_T4",
        ),
        (
            vertex("--machine-type", "n1-standard-8", "--base-output-dir", BASE, "--") + TRAINER,
            "has no GPU of its own",
        ),
        (
            vertex(
                "--machine-type",
                "e2-standard-8",
                "--accelerator-count",
                "1",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "e2-standard-8 cannot hold GPUs",
        ),
        (
            vertex(
                "--machine-type",
                "a2-highgpu-4g",
                "--accelerator-type",
                "NVIDIA_L4",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "a2-highgpu-4g comes with NVIDIA_TESLA_A100 GPUs, not NVIDIA_L4",
        ),
        (
            vertex("--accelerator-type", "NVIDIA_GTX_1080", "--base-output-dir", BASE, "--")
            + TRAINER,
            "is not a GPU type Vertex AI knows",
        ),
        (
            vertex("--base-output-dir", "my-bucket/runs", "--") + TRAINER,
            "--base-output-dir must be a gs:// path such as gs://my-bucket/lstm-composer/run-1, not 'my-bucket/runs'",
        ),
        (
            vertex("--base-output-dir", "/tmp/out", "--") + TRAINER,
            "--base-output-dir must be a gs:// path",
        ),
        (
            vertex("--tensorboard", "42", "--base-output-dir", BASE, "--") + TRAINER,
            "--tensorboard needs --service-account",
        ),
        (
            vertex("--tensorboard", "42", "--service-account", SA, "--")
            + TRAINER
            + ["--job-dir", "gs://b/j"],
            "--tensorboard needs --base-output-dir",
        ),
        (
            vertex(
                "--tensorboard",
                "projects/p/locations/europe-west4/tensorboards/1",
                "--service-account",
                SA,
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER,
            "--tensorboard is in europe-west4 but the job runs in us-central1",
        ),
        (
            vertex("--label", "Team=Music", "--base-output-dir", BASE, "--") + TRAINER,
            "--label 'Team=Music' is not KEY=VALUE",
        ),
        (vertex("--base-output-dir", BASE), "the trainer's flags are missing: add them after '--'"),
        (
            vertex("--base-output-dir", BASE, "--", "--epochs", "5"),
            "the trainer's flags after '--' are not valid: the following arguments are required: --data-dir",
        ),
        (
            vertex("--base-output-dir", BASE, "--", "--data-dir", "gs://b/r", "--epochz", "5"),
            "the trainer's flags after '--' are not valid: unrecognized arguments: --epochz 5",
        ),
        (
            vertex("--base-output-dir", BASE, "--", "--data-dir", "runs/data"),
            "--data-dir 'runs/data' is not in Cloud Storage",
        ),
        (vertex("--", "--data-dir", "gs://b/r"), "the job would write nowhere"),
        (
            vertex("--", "--data-dir", "gs://b/r", "--job-dir", "runs/job"),
            "--job-dir 'runs/job' must be a gs:// (or /gcs/) path",
        ),
        (
            vertex(
                "--machine-type",
                "a2-highgpu-4g",
                "--replica-count",
                "2",
                "--base-output-dir",
                BASE,
                "--",
            )
            + TRAINER
            + ["--distribute", "mirrored"],
            "--replica-count 2 is a multi-worker job, but the trainer's --distribute mirrored",
        ),
        (
            vertex(
                "--machine-type",
                "a2-highgpu-8g",
                "--replica-count",
                "2",
                "--base-output-dir",
                BASE,
                "--",
                "--data-dir",
                "gs://b/r",
                "--batch-size",
                "8",
            ),
            "--batch-size 8 is smaller than the 16 GPUs of the job",
        ),
        (
            vertex("--replica-count", "0", "--base-output-dir", BASE, "--") + TRAINER,
            "--replica-count must be at least 1",
        ),
        (
            vertex("--gpu-check", "--") + TRAINER,
            "--gpu-check runs python -m trainer.gpu_check, not training",
        ),
        (["--kubernetes", "--"] + TRAINER, "missing --image"),
        (
            ["--kubernetes", "--image", IMAGE, "--tensorboard", "1", "--"] + TRAINER,
            "a Kubernetes job cannot use it",
        ),
    ],
)
def test_clear_error_before_any_request(argv, message, capsys, monkeypatch):
    def no_request(*_):
        raise AssertionError("a request was sent")

    monkeypatch.setattr(vertex_ai, "submit", no_request)
    monkeypatch.setattr(vertex_ai, "build_request", no_request)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-composer submit: error: "), err
    assert message in lines[0]


def test_dry_run_and_kubernetes_exclude_each_other(capsys):
    assert cli.main(vertex("--dry-run", "--kubernetes", "--") + TRAINER) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_module_runs_as_a_script_without_tensorflow_or_aiplatform_on_error():
    """``python -m cloud.cli`` stops on a bad flag without importing TensorFlow or the Vertex
    SDK."""
    code = (
        "import sys; from cloud import cli; rc = cli.main(['--project', 'x']); "
        "print(rc, 'tensorflow' in sys.modules, 'google.cloud.aiplatform_v1' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert result.stdout.split() == ["2", "False", "False"], result.stderr


def test_missing_cloud_extra_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform_v1", None)  # as if not installed
    assert cli.main(vertex("--base-output-dir", BASE, "--dry-run", "--") + TRAINER) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "lstm-composer submit: error: google.cloud.aiplatform_v1 is not installed: "
        "python -m pip install 'lstm-composer[cloud]'"
    )


def test_the_submitter_never_loads_tensorflow():
    """Importing the command line (and with it the trainer's flag parser) loads no TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-c", "import cloud.cli, sys; assert 'tensorflow' not in sys.modules"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "machine_type, message",
    [
        (
            "foo-bar-9",
            "--machine-type foo-bar-9 is not a machine type this tool knows; known families: a2-highgpu, ",
        ),
        (
            "g2-standard-7",
            "--machine-type g2-standard-7 is not a shape of the g2-standard family; use one of "
            "g2-standard-4, g2-standard-8, g2-standard-12, g2-standard-16, g2-standard-24, g2-standard-32, "
            "g2-standard-48, g2-standard-96",
        ),
        ("a2-highgpu-3g", "use one of a2-highgpu-1g, a2-highgpu-2g, a2-highgpu-4g, a2-highgpu-8g"),
        ("n1-standard-7", "is not a shape of the n1-standard family"),
        ("G2-STANDARD-8", "is not a machine type this tool knows"),
    ],
)
def test_unknown_machine_type_is_refused_with_the_known_ones(machine_type, message, capsys):
    code = cli.main(
        vertex("--machine-type", machine_type, "--base-output-dir", BASE, "--dry-run", "--")
        + TRAINER
    )
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("lstm-composer submit: error: ") and message in line, line
    if "families" in message:
        for family in (
            "a2-highgpu",
            "a3-highgpu",
            "g2-standard",
            "n1-standard",
            "e2-standard",
            "n2-standard",
            "c2-standard",
        ):
            assert family in line


def test_every_known_machine_type_resolves():
    from cloud import machines

    for machine_type in machines.MACHINE_TYPES:
        kind, count = machines.resolve_accelerators(
            machine_type, "NVIDIA_TESLA_T4" if machine_type.startswith("n1-") else None, None
        )
        assert (kind, count) == machines.BUILT_IN_GPUS.get(machine_type, (kind, count))
        assert count >= 0 and (kind is None) == (count == 0)
    assert machines.resolve_accelerators("e2-standard-8", None, None) == (None, 0)


@pytest.mark.parametrize(
    "value, message",
    [
        ("gs://x/runs", "'x' cannot be a Cloud Storage bucket: bucket names are 3-63 characters"),
        ("gs://ab", "bucket names are 3-63 characters"),
        ("gs://" + "a" * 64 + "/runs", "bucket names are 3-63 characters"),
        (
            "gs://My-Bucket/runs",
            "bucket names use only lowercase letters, digits, '-', '_' and '.'",
        ),
        ("gs://-bucket/runs", "bucket names start and end with a letter or a digit"),
        ("gs:///runs", "names no bucket"),
    ],
)
def test_bucket_names_are_checked_by_the_storage_rules(value, message, capsys):
    assert cli.main(vertex("--base-output-dir", value, "--") + TRAINER) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lstm-composer submit: error: --base-output-dir ") and message in line, (
        line
    )
    assert "must be a gs:// path" not in line


@pytest.mark.parametrize(
    "value", ["gs://abc", "gs://my_bucket.example.com/runs/1", "gs://" + "a" * 63]
)
def test_valid_bucket_names_pass(value):
    args = cli.build_parser().parse_args(vertex("--base-output-dir", value))
    assert plan.plan_job(args, TRAINER).base_output_dir == value
