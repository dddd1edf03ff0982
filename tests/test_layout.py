"""The house rules of the layout (docs/ARCHITECTURE.md): small rooms and short functions, no import
cycle, who may import whom, cheap flags, docs that point at files a clone has."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("preprocessing", "trainer", "cloud", "lstm_composer")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SCREEN = 50  # lines: the job's phases and the pipeline's graph are read at a glance


def modules(*packages: str) -> list[Path]:
    """Every module of the packages, sub-packages included."""
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in modules(*PACKAGES)}


def function(path: Path, qualified: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    node: ast.AST = tree
    for name in qualified.split("."):
        node = next(
            n
            for n in ast.iter_child_nodes(node)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name
        )
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


def imports_of(path: Path, known: set[str], own: str = "") -> set[str]:
    """The project's modules ``path`` imports anywhere in it (inside functions too), each import
    resolved to the longest module name it names (``from a.b import c`` is ``a.b.c`` when that is a
    module, else ``a.b``)."""
    found = set()
    for name in imported_modules(path):
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != own:
            found.add(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_the_projects_modules():
    known = project_modules()
    graph = {name: imports_of(path, set(known), name) for name, path in known.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    lazy = tmp_path / "lazy.py"
    lazy.write_text(
        "def f():\n    from trainer import generate\n    from preprocessing.records import join\n"
    )
    assert {"trainer.generate", "preprocessing.records"} <= imports_of(lazy, set(project_modules()))


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_the_layout_sees_sub_packages():
    assert ROOT / "preprocessing" / "encodings" / "remi.py" in modules("preprocessing")


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_80_lines(path):
    long = [
        f"{node.name} ({length(node)} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and length(node) > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_train_and_the_pipeline_graph_each_fit_on_one_screen():
    assert length(function(ROOT / "trainer" / "task.py", "train")) <= SCREEN
    assert (
        length(function(ROOT / "preprocessing" / "pipeline.py", "PreprocessMidi.expand")) <= SCREEN
    )
    for node in ast.parse((ROOT / "trainer" / "task.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            assert length(node) <= SCREEN, node.name


def test_who_may_import_whom():
    for path in modules("preprocessing"):
        assert not {m for m in imported_modules(path) if m.split(".")[0] in ("trainer", "cloud")}, (
            path
        )
    for path in modules("trainer"):
        assert not {
            m for m in imported_modules(path) if m.split(".")[0] in ("apache_beam", "cloud")
        }, path
    for path in modules("cloud"):
        from_trainer = {m for m in imported_modules(path) if m.split(".")[0] == "trainer"}
        assert from_trainer <= {"trainer", "trainer.flags"}, (path, from_trainer)


@pytest.mark.parametrize(
    "module",
    [
        "trainer.flags",
        "trainer.generate_flags",
        "trainer.generate",
        "trainer.evaluate",
        "trainer.task",
        "cloud.cli",
        "preprocessing.quiet",
        "lstm_composer",
    ],
)
def test_the_flag_modules_import_no_tensorflow(module):
    code = f"import {module}, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command", [["format", "--check", "--diff"], ["check"]], ids=["format", "lint"]
)
def test_ruff_would_change_nothing(command):
    """The formatter decides the layout and the linter finds nothing (ruff.toml), over the whole
    tree."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown document that are prose: not in a code block, not a table row."""
    lines, in_code = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and not line.lstrip().startswith("|"):
            lines.append(line)
    return lines


@pytest.mark.parametrize(
    "doc",
    ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))],
)
def test_no_prose_line_is_over_100_characters(doc):
    long = [line for line in prose_lines((ROOT / doc).read_text()) if len(line) > 100]
    assert not long, long[:3]


def test_readme_is_short_and_the_cloud_path_has_its_own_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "docs/CLOUD.md" in readme and (ROOT / "docs" / "CLOUD.md").exists()
    assert "## The cloud path, end to end" not in readme


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "docs/ARCHITECTURE.md",
        "docs/PERFORMANCE.md",
        "docs/CLOUD.md",
        "docs/ENCODING.md",
        "docs/EVALUATION.md",
    ],
)
def test_docs_point_only_at_files_a_clone_has(doc):
    text = (ROOT / doc).read_text()
    mentioned = set(
        re.findall(r"`((?:preprocessing|trainer|cloud|bench|tests|docs)/[\w./-]+\.(?:py|md))", text)
    )
    mentioned |= {
        (ROOT / doc).parent.joinpath(link).resolve().relative_to(ROOT).as_posix()
        for link in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text)
    }
    assert mentioned, doc
    assert "../shared" not in text, f"{doc} points outside the repository"
    for path in mentioned:
        assert (ROOT / path).exists(), f"{doc} mentions {path}, which this repository does not have"
