"""The documents: every code block parses, and every document they point to exists.

A reader follows the README to docs/api.md and from a docstring to docs/architecture.md; a
link to a document that is not in the repository (the old "see API.md") is a dead end.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             ROOT / "benchmarks" / "README.md"]
SOURCES = sorted((ROOT / "brama").rglob("*.py"))
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# a path to a Markdown document: docs/api.md, (fleet.md), `benchmarks/README.md`
DOC_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def test_the_documents_exist() -> None:
    for name in ("api.md", "architecture.md", "deploying.md", "fleet.md", "observability.md"):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_parses(document: Path) -> None:
    text = document.read_text()
    for number, block in enumerate(CODE_BLOCK.findall(text), 1):
        try:
            compile(block, f"{document.name} block {number}", "exec",
                    flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            pytest.fail(f"{document.name}, python block {number}: {exc}\n{block}")


def _references(path: Path) -> list[tuple[str, Path]]:
    """(reference, the file it names) for every Markdown document named in `path`."""
    found = []
    for reference in DOC_REFERENCE.findall(path.read_text()):
        if "://" in reference or reference.startswith("."):
            continue
        candidates = [path.parent / reference, ROOT / reference, ROOT / "docs" / reference]
        target = next((c for c in candidates if c.is_file()), candidates[0])
        found.append((reference, target))
    return found


@pytest.mark.parametrize("path", DOCUMENTS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_a_missing_document(path: Path) -> None:
    missing = [ref for ref, target in _references(path) if not target.is_file()]
    assert not missing, f"{path.relative_to(ROOT)} points to missing documents: {missing}"


def test_the_reference_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See API.md and docs/nowhere.md, but not https://x.org/a.md.")
    assert [ref for ref, target in _references(page) if not target.is_file()] == [
        "API.md", "docs/nowhere.md"]


def test_the_readme_links_the_contract() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/api.md" in readme and "docs/architecture.md" in readme


def _test_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("test_")
            ):
                names.add(node.name)
    return names


def test_every_test_the_guarantees_name_exists() -> None:
    """architecture.md's Guarantees name the test behind each promise: a renamed or deleted
    test must not leave a promise pointing at nothing."""
    text = " ".join((ROOT / "docs" / "architecture.md").read_text().split())
    named = set(re.findall(r"\b(test_\w+)\*", text)) | set(re.findall(r"::\s*(test_\w+)", text))
    assert len(named) > 30
    named = {name for name in named if not name.endswith("_")}  # test_attack_*.py: a glob
    missing = sorted(named - _test_names())
    assert not missing, f"architecture.md names tests that do not exist: {missing}"
