"""Every command of docs/CLOUD.md ("The cloud path, end to end"), exercised offline.

The commands are read from the file itself, with the variables of its ``export`` lines, so the
document cannot drift from what is tested: ``lstm-composer submit`` runs with ``--dry-run`` and its
request is parsed back into google-cloud-aiplatform's types; the Dataflow command is built into a
Dataflow job by tests/test_cloud_dataflow.py (against the GCS emulator); the rest are parsed with
the flags of the program they call. A command this file does not know fails the test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLOUD_DOC = ROOT / "docs" / "CLOUD.md"
TITLE = "# The cloud path, end to end"
GIT_SHA = "abc1234"
# One-time set-up commands that need a real project; checked for syntax and defined variables only.
SETUP = (
    "gcloud config set",
    "gcloud services enable",
    "gcloud artifacts repositories create",
    "gcloud storage buckets create",
    "gcloud iam service-accounts create",
    "gcloud projects add-iam-policy-binding",
    "gcloud storage buckets add-iam-policy-binding",
    "gcloud storage cp",
)


def documented_commands() -> tuple[list[list[str]], dict[str, str]]:
    """(every command of the ```bash blocks as argv lists, pipes split off; the exported
    variables)."""
    text = CLOUD_DOC.read_text()
    text = text[text.index(TITLE) :]
    variables: dict[str, str] = {}
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            line = line.replace("$(git rev-parse --short HEAD)", GIT_SHA)

            def expand(match, line=line):
                name = match.group(1) or match.group(2)
                assert name in variables, f"${name} is used before it is exported: {line}"
                return variables[name]

            expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, line)
            words = shlex.split(expanded)
            if words[0] == "export":
                for assignment in words[1:]:
                    name, _, value = assignment.partition("=")
                    variables[name] = value
                continue
            while "|" in words:
                index = words.index("|")
                commands.append(words[:index])
                words = words[index + 1 :]
            commands.append(words)
    return commands, variables


COMMANDS, VARIABLES = documented_commands()


def commands_starting(*prefix: str) -> list[list[str]]:
    return [c for c in COMMANDS if c[: len(prefix)] == list(prefix)]


def test_every_command_is_one_the_tests_know():
    known = [
        ("lstm-composer", "submit"),
        ("lstm-composer", "preprocess"),
        ("lstm-composer", "generate"),
        ("gcloud", "builds", "submit"),
        ("tensorboard",),
        ("kubectl", "apply", "-f", "-"),
    ]
    known += [tuple(s.split()) for s in SETUP]
    for command in COMMANDS:
        assert any(tuple(command[: len(k)]) == k for k in known), (
            f"untested command in docs/CLOUD.md: {command}"
        )
    assert {
        "PROJECT",
        "REGION",
        "BUCKET",
        "REPOSITORY",
        "IMAGE",
        "SERVICE_ACCOUNT",
        "TENSORBOARD",
    } <= set(VARIABLES)
    assert (
        VARIABLES["IMAGE"]
        == f"{VARIABLES['REGION']}-docker.pkg.dev/{VARIABLES['PROJECT']}/{VARIABLES['REPOSITORY']}/trainer:latest"
    )


def test_cloud_build_command_matches_cloudbuild_yaml():
    (command,) = commands_starting("gcloud", "builds", "submit")
    config_file = command[command.index("--config") + 1]
    config = yaml.safe_load((ROOT / config_file).read_text())
    substitutions = dict(
        item.split("=", 1) for item in command[command.index("--substitutions") + 1].split(",")
    )
    assert set(substitutions) - {"SHORT_SHA"} <= set(config["substitutions"])
    assert substitutions["SHORT_SHA"] == GIT_SHA
    assert (
        substitutions["_REGION"] == VARIABLES["REGION"]
        and substitutions["_REPOSITORY"] == VARIABLES["REPOSITORY"]
    )
    assert command[-1] == "." and (ROOT / command[-1] / "Dockerfile").exists()
    # The image that build pushes as :latest is the ${IMAGE} every submit command uses.
    latest = next(i for i in config["images"] if i.endswith(":latest"))
    values = {**config["substitutions"], **substitutions, "PROJECT_ID": VARIABLES["PROJECT"]}
    assert (
        re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], latest)
        == VARIABLES["IMAGE"]
    )


def submit_commands() -> list[list[str]]:
    return commands_starting("lstm-composer", "submit")


def test_submit_is_wired_to_cloud_cli():
    import lstm_composer

    if "submit" in lstm_composer.SUBCOMMANDS:
        assert lstm_composer.SUBCOMMANDS["submit"][0] == "cloud.cli:main"


@pytest.mark.parametrize(
    "command",
    [c for c in submit_commands() if "--kubernetes" not in c],
    ids=lambda c: " ".join(c[2:12]),
)
def test_vertex_submit_commands_build_valid_requests(command, capsys):
    from google.cloud.aiplatform_v1 import types

    from cloud import cli

    argv = command[2:]
    own, trainer = cli.split_argv(argv)
    assert cli.main(own + ["--dry-run", "--"] + trainer if trainer else own + ["--dry-run"]) == 0
    request = types.CreateCustomJobRequest.from_json(
        capsys.readouterr().out, ignore_unknown_fields=False
    )
    assert request.parent == f"projects/{VARIABLES['PROJECT']}/locations/{VARIABLES['REGION']}"
    for pool in request.custom_job.job_spec.worker_pool_specs:
        assert pool.container_spec.image_uri == VARIABLES["IMAGE"]


def test_the_documented_shapes_are_1_gpu_8_gpus_and_several_machines():
    from cloud import cli
    from cloud.plan import plan_job

    shapes = set()
    for command in submit_commands():
        own, trainer = cli.split_argv(command[2:])
        plan = plan_job(cli.build_parser().parse_args(own), trainer)
        shapes.add(
            (plan.replica_count, plan.accelerator_count, plan.gpu_check, "--kubernetes" in own)
        )
    assert (1, 1, True, False) in shapes  # the GPU smoke check
    assert (1, 1, False, False) in shapes  # 1 GPU
    assert (1, 8, False, False) in shapes  # 8 GPUs, one machine
    assert any(r > 1 and not k for r, _, _, k in shapes)  # several machines
    assert any(k for *_, k in shapes)  # Kubernetes


def test_kubernetes_command_pipes_a_valid_manifest_into_kubectl(capsys):
    from cloud import cli

    index = next(
        i
        for i, c in enumerate(COMMANDS)
        if c[:2] == ["lstm-composer", "submit"] and "--kubernetes" in c
    )
    assert COMMANDS[index + 1] == ["kubectl", "apply", "-f", "-"]
    assert cli.main(COMMANDS[index][2:]) == 0
    kinds = [doc["kind"] for doc in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["Service", "Job"]


def test_dataflow_command_is_the_one_the_dataflow_test_builds():
    from preprocessing import pipeline

    (command,) = commands_starting("lstm-composer", "preprocess")
    args, beam_args = pipeline.parse_args(command[2:])
    assert (
        args.input == f"gs://{VARIABLES['BUCKET']}/midi"
        and args.output == f"gs://{VARIABLES['BUCKET']}/records"
    )
    assert "--runner" in beam_args and "DataflowRunner" in beam_args and "./setup.py" in beam_args
    assert (ROOT / "setup.py").exists()
    import test_cloud_dataflow

    assert test_cloud_dataflow.dataflow_argv()[: len(command) - 2] == command[2:]


def base_output_dirs() -> set[str]:
    return {
        c[c.index("--base-output-dir") + 1] for c in submit_commands() if "--base-output-dir" in c
    }


def test_tensorboard_command_reads_a_jobs_log_dir():
    from tensorboard import program

    (command,) = commands_starting("tensorboard")
    logdir = command[command.index("--logdir") + 1]
    # AIP_TENSORBOARD_LOG_DIR = <base>/logs/
    assert logdir.removesuffix("/logs") in base_output_dirs()
    program.TensorBoard().configure(argv=command)  # tensorboard's own flag parser accepts it


def test_generate_command_reads_a_jobs_model_dir():
    from trainer import generate_flags

    (command,) = commands_starting("lstm-composer", "generate")
    args = generate_flags.build_parser().parse_args(command[2:])
    # AIP_MODEL_DIR = <base>/model/
    assert args.model_dir.removesuffix("/model") in base_output_dirs()
    assert args.output == "composition.mid"
