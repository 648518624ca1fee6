"""The documentation states what exists: the API page what the gateway's OpenAPI document
says, the gate page every e2e check there is, and every page the code points a reader to
(in a message or a docstring: a user sent to a section that is not there is stuck exactly when
they need help). `mkdocs build --strict` (`nox -s docs`, in `nox -s lint`) checks the links.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.openapi import openapi_document
from harness import paths

DOCS = paths.REPO_ROOT / "docs"
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
# A pointer to a page and one of its sections: (docs/gate.md, "Cluster shape").
REFERENCE = re.compile(r"(docs/[a-z-]+\.md), [\"']([^\"']+)[\"']")
ENDPOINT = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/[a-z_.]*)")
CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)


def page(name: str) -> str:
    return (DOCS / name).read_text()


def sections(text: str) -> dict[str, str]:
    """Each `## ` section's heading and body (code blocks' `#` lines are not headings)."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def documented_endpoints(text: str) -> set[tuple[str, str]]:
    return {(method.lower(), path) for method, path in ENDPOINT.findall(text)}


def openapi_endpoints() -> set[tuple[str, str]]:
    document = openapi_document()["paths"]
    return {
        (method, path) for path, item in document.items() for method in item if method != "servers"
    }


def test_the_api_page_names_every_endpoint_of_the_openapi_document_and_no_other() -> None:
    assert documented_endpoints(page("api.md")) == openapi_endpoints()


def test_an_undocumented_endpoint_would_be_seen() -> None:
    text = page("api.md").replace("POST /transaction", "POST /transactions")
    assert documented_endpoints(text) != openapi_endpoints()


@pytest.mark.parametrize(
    ("path", "schema"), [("/query", "QueryRequest"), ("/transaction", "TransactionRequest")]
)
def test_every_request_field_is_described_on_the_api_page(path: str, schema: str) -> None:
    body = sections(page("api.md"))[f"POST {path}"]
    fields = openapi_document()["components"]["schemas"][schema]["properties"]
    missing = [field for field in fields if not re.search(rf"\b{field}\b", body)]
    assert not missing, f"docs/api.md, POST {path}: fields not described: {missing}"


def test_the_fields_listed_for_query_are_fields_of_the_document() -> None:
    body = CODE_BLOCK.sub("", sections(page("api.md"))["POST /query"])
    listed = set(re.findall(r"^- `([a-z_]+)\b", body, re.MULTILINE))
    schema = openapi_document()["components"]["schemas"]["QueryRequest"]["properties"]
    assert listed == set(schema)


def e2e_checks() -> dict[str, list[str]]:
    """Every test function under tests/e2e, by module path."""
    checks = {}
    for module in sorted((paths.REPO_ROOT / "tests" / "e2e").rglob("test_*.py")):
        tree = ast.parse(module.read_text())
        functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
        checks[module.relative_to(paths.REPO_ROOT).as_posix()] = [
            name for name in functions if name.startswith("test_")
        ]
    return checks


def documented_checks(text: str) -> dict[str, list[str]]:
    """The gate page's table of checks: `| `module` | `test_a`<br>`test_b` |`."""
    rows = re.findall(r"^\| `(tests/e2e/[^`]+)` \| (.+) \|$", text, re.MULTILINE)
    return {module: re.findall(r"`(test_\w+)`", cell) for module, cell in rows}


def test_the_gate_page_lists_every_e2e_check_and_no_other() -> None:
    assert documented_checks(page("gate.md")) == e2e_checks(), (
        "docs/gate.md's table of checks differs from tests/e2e: add or remove the rows"
    )


def test_a_check_missing_from_the_table_would_be_seen() -> None:
    text = page("gate.md").replace("<br>`test_every_node_is_ready`", "")
    assert documented_checks(text) != e2e_checks()


def test_every_numbered_check_names_modules_that_exist() -> None:
    numbered = re.findall(r"^\d+\. \*\*[^*]+\*\* \(`(test_\w+\.py)`", page("gate.md"), re.MULTILINE)
    modules = {Path(module).name for module in e2e_checks()}
    assert numbered and set(numbered) <= modules


def test_every_page_and_section_the_code_points_to_exists() -> None:
    named = {
        (source.relative_to(paths.REPO_ROOT).as_posix(), target, section)
        for tree in ("app", "harness", "bench")
        for source in (paths.REPO_ROOT / tree).rglob("*.py")
        for target, section in REFERENCE.findall(source.read_text())
    }
    assert named, "no docs reference found: the pattern is out of date"
    missing = [
        reference
        for reference in sorted(named)
        if not (paths.REPO_ROOT / reference[1]).is_file()
        or reference[2] not in HEADING.findall((paths.REPO_ROOT / reference[1]).read_text())
    ]
    assert not missing, f"no such page or section: {missing}"


def test_nothing_points_to_a_readme_section_or_outside_the_project() -> None:
    for tree in ("app", "harness", "bench"):
        for source in (paths.REPO_ROOT / tree).rglob("*.py"):
            text = source.read_text()
            assert "shared/notes" not in text, source
            assert not re.search(r"README, [\"']", text), f"{source}: point to docs/ instead"
