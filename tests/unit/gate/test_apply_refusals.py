"""A change the API server will not make in place is reported with the object, the field and
the way out (harness.e2e.deploy.refused_in_place), from kubectl apply's own words."""

from __future__ import annotations

from harness.e2e.deploy import refused_in_place

# As the API server words them (kubectl apply prints them as they come).
STATEFULSET = (
    'The StatefulSet "postgres" is invalid: spec: Forbidden: updates to statefulset spec for '
    "fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)
DEPLOYMENT = (
    'The Deployment "pg-gateway" is invalid: spec.selector: Invalid value: '
    'v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}}: field is immutable'
)
SERVICE = (
    'The Service "pg-gateway" is invalid: spec.clusterIPs[0]: Invalid value: '
    '[]string{"10.96.0.9"}: may not change once set'
)


def test_a_statefulset_field_names_the_orphaning_delete() -> None:
    output = f"configmap/pg-gateway-config-abc unchanged\n{STATEFULSET}\n"
    (refusal,) = refused_in_place(output, "ns1")
    assert refusal.startswith("StatefulSet/postgres: spec cannot change in place (Forbidden:")
    assert "`kubectl -n ns1 delete statefulset postgres --cascade=orphan`" in refusal


def test_a_deployment_selector_names_the_delete_and_its_cost() -> None:
    (refusal,) = refused_in_place(DEPLOYMENT, "ns1")
    assert "Deployment/pg-gateway: spec.selector cannot change in place" in refusal
    assert "`kubectl -n ns1 delete deployment pg-gateway`" in refusal
    assert "its pods go" in refusal


def test_any_other_kind_is_deleted_and_applied_again() -> None:
    (refusal,) = refused_in_place(SERVICE, "ns1")
    assert "Service/pg-gateway: spec.clusterIPs[0] cannot change in place" in refusal
    assert "`kubectl -n ns1 delete service pg-gateway`" in refusal


def test_other_failures_are_not_taken_for_one() -> None:
    output = (
        'The Deployment "pg-gateway" is invalid: spec.replicas: Invalid value: -1: must be '
        "greater than or equal to 0\nerror: unable to recognize: no matches for kind"
    )
    assert refused_in_place(output, "ns1") == []
