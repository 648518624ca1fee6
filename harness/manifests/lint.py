"""Manifest lint: render every kustomize target, validate it strictly, apply the policy rules
and kube-score.

    python -m harness.manifests [--manifests DIR] [--kubernetes-version 1.34]

1. Render `manifests/base` and every `manifests/overlays/*` with `harness.manifests.render`
   (the same rendering the e2e deploy applies), with kustomize's origin annotations, so each
   finding names the file an object came from.
2. Validate every rendered object against the Kubernetes JSON schemas bundled in the
   `kubernetes-validate` wheel, strictly (unknown fields are errors), offline.
3. Apply `harness.manifests.policy` to each target, and scan the raw files for committed
   Secrets (a Secret file that no kustomization lists would never be rendered).
4. Run kube-score (`harness.manifests.kubescore`) over each overlay: the deployable targets
   (the base's gateway image is a placeholder every overlay rewrites).

Every finding prints as `file-or-target: Kind/name: rule-id: message`. Exit status 0 with a
one-line summary when clean, 1 on any finding, 2 when the tools are missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_validate
import yaml

from harness import paths, versions
from harness.manifests import kubescore
from harness.manifests.policy import Finding, check, check_secret
from harness.manifests.render import (
    RenderError,
    Resource,
    display_path,
    kustomize_command,
    render,
)
from harness.steps import HarnessError


@dataclass(frozen=True)
class Target:
    """A kustomization directory to render, named relative to the manifests directory;
    `deployable` ones (the overlays) also go through kube-score."""

    name: str
    path: Path
    deployable: bool = True


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    objects: int = 0
    targets: list[str] = field(default_factory=list)


def discover_targets(manifests: Path) -> list[Target]:
    """The base (not deployable: its gateway image is a placeholder) and every overlay."""
    targets = [Target("base", manifests / "base", deployable=False)]
    overlays = manifests / "overlays"
    if overlays.is_dir():
        targets += [
            Target(f"overlays/{path.name}", path)
            for path in sorted(overlays.iterdir())
            if (path / "kustomization.yaml").is_file()
        ]
    return [target for target in targets if (target.path / "kustomization.yaml").is_file()]


def validate_schema(
    resource: Resource, version: str = versions.KUBERNETES_MINOR
) -> Iterator[Finding]:
    """Strict validation against the bundled Kubernetes JSON schemas (offline)."""
    try:
        kubernetes_validate.validate(dict(resource.body), version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = ".".join(str(part) for part in err.path) or "(root)"
        yield Finding(resource.source, resource.ref, "schema.invalid", f"{where}: {err.message}")
    except kubernetes_validate.SchemaNotFoundError as err:
        yield Finding(resource.source, resource.ref, "schema.unknown-kind", err.message)


def committed_secrets(manifests: Path) -> Iterator[Finding]:
    """Secrets with data in any YAML file under the manifests, listed by a kustomization or not."""
    for path in sorted([*manifests.rglob("*.yaml"), *manifests.rglob("*.yml")]):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as err:
            yield Finding(display_path(path), "-", "yaml.invalid", str(err).replace("\n", " "))
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                yield from check_secret(Resource(doc, display_path(path)))


def lint_target(
    target: Target,
    command: Sequence[str],
    version: str = versions.KUBERNETES_MINOR,
    kube_score: Path | None = None,
) -> tuple[list[Resource], list[Finding]]:
    """Render, validate and check one target (and kube-score a deployable one when given
    its binary); a render failure is a finding, not a crash."""
    where = display_path(target.path)
    try:
        resources = render(target.path, origins=True, command=command)
    except RenderError as err:
        return [], [Finding(where, "-", "render", str(err))]
    findings = [finding for res in resources for finding in validate_schema(res, version)]
    findings += check(resources, target=where)
    if kube_score and target.deployable:
        findings += kubescore.score(resources, kube_score, where)
    return resources, findings


def lint(
    manifests: Path = paths.MANIFESTS_DIR,
    version: str = versions.KUBERNETES_MINOR,
    command: Sequence[str] | None = None,
    kube_score: Path | None = None,
) -> Report:
    """Lint every target under `manifests`; findings are deduplicated across targets."""
    command = list(command or kustomize_command())
    report = Report()
    seen: dict[tuple[str, str, str, str], list[str]] = {}
    for target in discover_targets(manifests):
        report.targets.append(target.name)
        resources, findings = lint_target(target, command, version, kube_score)
        report.objects += len(resources)
        for finding in findings:
            seen.setdefault((finding.source, finding.ref, finding.rule, finding.message), [])
            seen[(finding.source, finding.ref, finding.rule, finding.message)].append(target.name)
    for (source, ref, rule, message), names in seen.items():
        report.findings.append(Finding(source, ref, rule, f"{message} (in {', '.join(names)})"))
    if not report.targets:
        report.findings.append(
            Finding(display_path(manifests), "-", "render", "no kustomization found")
        )
    reported = {(f.source, f.ref, f.rule) for f in report.findings}
    report.findings += [
        finding
        for finding in committed_secrets(manifests)
        if (finding.source, finding.ref, finding.rule) not in reported
    ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.manifests", description=__doc__)
    parser.add_argument("--manifests", type=Path, default=paths.MANIFESTS_DIR)
    parser.add_argument("--kubernetes-version", default=versions.KUBERNETES_MINOR)
    args = parser.parse_args(argv)
    try:
        report = lint(
            args.manifests, args.kubernetes_version, kube_score=kubescore.ensure_kube_score()
        )
    except HarnessError as err:  # kubectl or kube-score missing, or kube-score not buildable
        print(f"manifest lint: {err}", file=sys.stderr)
        return 2
    for finding in report.findings:
        print(finding)
    summary = (
        f"{len(report.targets)} targets ({', '.join(report.targets)}), {report.objects} objects, "
        f"Kubernetes {args.kubernetes_version} schemas (strict), policy rules, "
        f"kube-score {versions.KUBE_SCORE_VERSION} (overlays)"
    )
    if report.findings:
        print(f"manifest lint: {len(report.findings)} finding(s) in {summary}", file=sys.stderr)
        return 1
    print(f"manifest lint: clean: {summary}")
    return 0
