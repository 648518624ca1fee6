"""kube-score, a well-kept Kubernetes manifest linter, over each rendered overlay.

The project's own rules (`policy`) keep what is specific to this deployment; the general
good practice (resources, probes, security context, image tags, NetworkPolicy coverage, PDBs,
Service types) is kube-score's. A check that does not fit is ignored in the manifest itself
with kube-score's `kube-score/ignore` annotation, beside a comment saying why, so every
exception is reviewed where the object is. kube-score is pinned (versions.KUBE_SCORE_VERSION)
and built with `go install` into the harness's cache, like kind.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness import versions
from harness.build import gobuild
from harness.manifests.policy import Finding
from harness.manifests.render import Resource
from harness.steps import probe

SCORE_TIMEOUT_S = 60
GRADE_OK = 10
GRADES = {1: "critical", 5: "warning", 7: "almost ok"}


def ensure_kube_score() -> Path:
    """The pinned kube-score, built on first use (HarnessError when Go is missing)."""
    return gobuild.go_install(versions.KUBE_SCORE_PACKAGE, versions.KUBE_SCORE_VERSION)


def score(resources: Sequence[Resource], binary: Path, target: str) -> list[Finding]:
    """Every check kube-score does not pass on one rendered target, as findings named
    `kube-score.<check-id>` on the file each object came from."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="kube-score-") as rendered:
        yaml.safe_dump_all([res.body for res in resources], rendered)
        rendered.flush()
        result = probe(
            [
                binary,
                "score",
                "--output-format=json",
                f"--kubernetes-version=v{versions.KUBERNETES_MINOR}",
                rendered.name,
            ],
            timeout=SCORE_TIMEOUT_S,
        )
    # Exit 1 only says that some check failed; the JSON says which.
    try:
        objects = json.loads(result.stdout) if result.returncode in (0, 1) else None
    except json.JSONDecodeError:
        objects = None
    if not isinstance(objects, list):
        reason = result.stderr.strip() or result.stdout.strip()[:200]
        return [Finding(target, "-", "kube-score", f"exited {result.returncode}: {reason}")]
    sources = {res.ref: res.source for res in resources}
    return [finding for obj in objects for finding in _object_findings(obj, sources, target)]


def _object_findings(
    obj: dict[str, Any], sources: dict[str, str], target: str
) -> Iterator[Finding]:
    ref = f"{obj['type_meta']['kind']}/{obj['object_meta']['name']}"
    for result in obj.get("checks") or []:
        if result.get("skipped") or result["grade"] >= GRADE_OK:
            continue
        comments = [
            f"({comment['path']}) {comment['summary']}"
            if comment.get("path")
            else comment["summary"]
            for comment in result.get("comments") or []
        ]
        grade = GRADES.get(result["grade"], f"grade {result['grade']}")
        message = f"{'; '.join(comments) or result['check']['name']} [{grade}]"
        yield Finding(sources.get(ref, target), ref, f"kube-score.{result['check']['id']}", message)
