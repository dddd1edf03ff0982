"""cloudbuild.yaml, parsed and checked the way Cloud Build would read it (without Cloud Build)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
# Cloud Build's built-in substitutions (those of triggered builds can be passed by hand, as
# SHORT_SHA is).
BUILT_IN = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_NAME",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}
IMAGE = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_IMAGE}"


def strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def used_substitutions() -> set[str]:
    used = set()
    for text in strings(CONFIG["steps"]) + strings(CONFIG["images"]):
        text = text.replace("$$", "")  # $$ is a literal $ for the shell
        used |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
        used |= set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    return used


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], text)


def test_every_substitution_used_is_defined_and_every_defined_one_is_used():
    defined = set(CONFIG["substitutions"])
    used = used_substitutions()
    assert all(name.startswith("_") for name in defined)  # user substitutions must start with _
    assert used - defined <= BUILT_IN, used - defined - BUILT_IN
    assert defined <= used, f"defined but unused (Cloud Build rejects these): {defined - used}"
    assert {"_REGION", "_REPOSITORY", "PROJECT_ID", "SHORT_SHA"} <= used


def test_every_step_names_an_image_and_steps_are_ordered():
    steps = CONFIG["steps"]
    ids = [step["id"] for step in steps]
    assert len(ids) == len(set(ids))
    for step in steps:
        assert isinstance(step.get("name"), str) and step["name"], step
        for dependency in step.get("waitFor", []):
            assert dependency == "-" or dependency in ids[: ids.index(step["id"])], (
                step["id"],
                dependency,
            )
    values = {**CONFIG["substitutions"], "PROJECT_ID": "p", "SHORT_SHA": "abc1234"}
    images = {step["id"]: expand(step["name"], values) for step in steps}
    assert images["unit-tests"] == CONFIG["substitutions"]["_PYTHON_IMAGE"]
    assert images["build-trainer"] == "gcr.io/cloud-builders/docker"


def test_tests_run_before_the_image_is_built():
    steps = {step["id"]: step for step in CONFIG["steps"]}
    script = "\n".join(steps["unit-tests"]["args"])
    assert "python -m pytest" in script and '-e ".[dev]"' in script
    assert "unit-tests" in steps["build-trainer"]["waitFor"]
    # The tests run in the Python the image is built on.
    dockerfile_base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert CONFIG["substitutions"]["_PYTHON_IMAGE"] == dockerfile_base


def test_build_context_and_dockerfile_exist_and_both_tags_are_pushed():
    build = next(step for step in CONFIG["steps"] if step["id"] == "build-trainer")
    args = build["args"]
    assert args[0] == "build"
    dockerfile = next(a.split("=", 1)[1] for a in args if a.startswith("--file="))
    context = args[-1]
    assert (ROOT / context).is_dir() and (ROOT / context / dockerfile).is_file()
    assert (ROOT / context / ".dockerignore").is_file()
    tags = [a.split("=", 1)[1] for a in args if a.startswith("--tag=")]
    assert tags == [f"{IMAGE}:$SHORT_SHA", f"{IMAGE}:latest"]
    assert CONFIG["images"] == tags  # images: lists exactly what is pushed
    values = {**CONFIG["substitutions"], "PROJECT_ID": "my-project-123", "SHORT_SHA": "abc1234"}
    assert (
        expand(tags[0], values)
        == "us-central1-docker.pkg.dev/my-project-123/lstm-composer/trainer:abc1234"
    )


def test_substitutions_are_documented_at_the_top():
    header = (ROOT / "cloudbuild.yaml").read_text().split("substitutions:", 1)[0]
    for name in CONFIG["substitutions"]:
        assert name in header, f"{name} is not documented in the header comment"
    assert "gcloud builds submit --config cloudbuild.yaml" in header
