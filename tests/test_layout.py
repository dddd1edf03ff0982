"""The house rules of the layout (docs/ARCHITECTURE.md): small rooms, who may import whom, cheap flags,
docs that point at files a clone has."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("preprocessing", "trainer", "cloud")
MAX_MODULE_LINES = 400
SCREEN = 50  # lines: a function that does not fit is several functions


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).glob("*.py"))


def function(path: Path, qualified: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    node: ast.AST = tree
    for name in qualified.split("."):
        node = next(n for n in ast.iter_child_nodes(node)
                    if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
    return node


def length(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_train_and_the_pipeline_graph_each_fit_on_one_screen():
    assert length(function(ROOT / "trainer" / "task.py", "train")) <= SCREEN
    assert length(function(ROOT / "preprocessing" / "pipeline.py", "PreprocessMidi.expand")) <= SCREEN
    for node in ast.parse((ROOT / "trainer" / "task.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            assert length(node) <= SCREEN, node.name


def test_who_may_import_whom():
    for path in modules("preprocessing"):
        assert not {m for m in imported_modules(path) if m.split(".")[0] in ("trainer", "cloud")}, path
    for path in modules("trainer"):
        assert not {m for m in imported_modules(path) if m.split(".")[0] in ("apache_beam", "cloud")}, path
    for path in modules("cloud"):
        from_trainer = {m for m in imported_modules(path) if m.split(".")[0] == "trainer"}
        assert from_trainer <= {"trainer", "trainer.flags"}, (path, from_trainer)


@pytest.mark.parametrize("module", ["trainer.flags", "trainer.generate_flags", "trainer.evaluate", "cloud.cli",
                                    "preprocessing.quiet"])
def test_the_flag_modules_import_no_tensorflow(module):
    code = f"import {module}, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_readme_is_short_and_the_cloud_path_has_its_own_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    assert "docs/CLOUD.md" in readme and (ROOT / "docs" / "CLOUD.md").exists()
    assert "## The cloud path, end to end" not in readme


@pytest.mark.parametrize("doc", ["README.md", "docs/ARCHITECTURE.md", "docs/PERFORMANCE.md", "docs/CLOUD.md",
                                 "docs/ENCODING.md", "docs/EVALUATION.md"])
def test_docs_point_only_at_files_a_clone_has(doc):
    text = (ROOT / doc).read_text()
    mentioned = set(re.findall(r"`((?:preprocessing|trainer|cloud|bench|tests|docs)/[\w./-]+\.(?:py|md))", text))
    mentioned |= {(ROOT / doc).parent.joinpath(link).resolve().relative_to(ROOT).as_posix()
                  for link in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text)}
    assert mentioned, doc
    assert "../shared" not in text, f"{doc} points outside the repository"
    for path in mentioned:
        assert (ROOT / path).exists(), f"{doc} mentions {path}, which this repository does not have"
