"""kube-score's answer as findings: what counts, where it points, and a broken run.

A stand-in executable replays kube-score's JSON (the shape of v1.20.0's `-o json`), so these
run without Go; `nox -s lint` runs the real, pinned kube-score over the real overlays.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.manifests import kubescore
from harness.manifests.render import Resource
from harness.steps import HarnessError

DEPLOYMENT = Resource(
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pg-gateway"}},
    "manifests/base/gateway/deployment.yaml",
)


def check(check_id: str, grade: int, *comments: tuple[str, str], skipped: bool = False) -> dict:
    return {
        "check": {"name": check_id.replace("-", " ").title(), "id": check_id},
        "grade": grade,
        "skipped": skipped,
        "comments": [{"path": path, "summary": summary} for path, summary in comments] or None,
    }


def scored(kind: str, name: str, *checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "object_name": f"{kind}/{name}",
        "type_meta": {"kind": kind},
        "object_meta": {"name": name},
        "checks": list(checks),
    }


def stand_in(tmp_path: Path, stdout: str, exit_code: int) -> Path:
    """An executable that prints `stdout` and exits `exit_code`, whatever it is asked."""
    (tmp_path / "answer").write_text(stdout)
    binary = tmp_path / "kube-score"
    binary.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"sys.stdout.write(open({str(tmp_path / 'answer')!r}).read())\nsys.exit({exit_code})\n"
    )
    binary.chmod(0o755)
    return binary


def test_every_check_below_ok_is_a_finding_on_the_objects_file(tmp_path: Path) -> None:
    answer = [
        scored(
            "Deployment",
            "pg-gateway",
            check("container-resources", 10),
            check("container-image-pull-policy", 1, ("gateway", "x"), skipped=True),  # ignored
            check("container-ephemeral-storage-request-and-limit", 1, ("gateway", "no limit")),
            check("pod-networkpolicy", 5, ("", "no egress NetworkPolicy")),
        ),
        scored("Service", "elsewhere", check("service-type", 5)),
    ]
    binary = stand_in(tmp_path, json.dumps(answer), 1)
    findings = [str(f) for f in kubescore.score([DEPLOYMENT], binary, "manifests/overlays/x")]
    assert findings == [
        "manifests/base/gateway/deployment.yaml: Deployment/pg-gateway: "
        "kube-score.container-ephemeral-storage-request-and-limit: (gateway) no limit [critical]",
        "manifests/base/gateway/deployment.yaml: Deployment/pg-gateway: "
        "kube-score.pod-networkpolicy: no egress NetworkPolicy [warning]",
        # an object the target did not render is named by the target; no comment: the check
        "manifests/overlays/x: Service/elsewhere: kube-score.service-type: Service Type [warning]",
    ]


def test_a_clean_answer_has_no_finding(tmp_path: Path) -> None:
    answer = [scored("Deployment", "pg-gateway", check("container-resources", 10))]
    assert kubescore.score([DEPLOYMENT], stand_in(tmp_path, json.dumps(answer), 0), "t") == []


@pytest.mark.parametrize(
    ("stdout", "exit_code"), [("not json", 1), ("[]", 2), ('{"a": 1}', 0), ("", 127)]
)
def test_a_broken_run_is_one_finding_not_a_crash(
    tmp_path: Path, stdout: str, exit_code: int
) -> None:
    [finding] = kubescore.score([DEPLOYMENT], stand_in(tmp_path, stdout, exit_code), "target")
    assert (finding.source, finding.ref, finding.rule) == ("target", "-", "kube-score")
    assert finding.message.startswith(f"exited {exit_code}")


def test_kube_score_is_built_into_the_cache_at_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PG_GATEWAY_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")  # no Go: the message says what to install
    with pytest.raises(HarnessError, match=r"kube-score v1\.20\.0 is needed"):
        kubescore.ensure_kube_score()
    cached = tmp_path / "kube-score" / "v1.20.0" / "kube-score"
    cached.parent.mkdir(parents=True)
    cached.write_text("")
    assert kubescore.ensure_kube_score() == cached
