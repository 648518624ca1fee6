"""The smoke checks' pytest plugin: `nox -s smoke -- --kubeconfig K --namespace NS [--url URL]`.

Loaded with `-p harness.smoke.plugin`, as the e2e plugin is: a test of tests/smoke/ names
what it needs (`namespace`, `wait`, `api`, `core`, `apps`, `gateway`, `live`) and imports no
conftest. The checks read the deployment and change nothing in it; what they write, a
scratch table and a one-shot probe pod, they remove again. They run after
`scripts/deploy.sh` on any cluster (the Jenkinsfile and the GitHub workflow roll the
Deployment back when they fail), so a failure must read at a glance: the session ends with
one line a check, and its first reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.config import ConfigException

from harness import kube, names
from harness.manifests.render import Resource
from harness.smoke import target
from harness.steps import HarnessError

WAIT_S = 120.0
# `core`, `apps` (and `networking`) over this plugin's `api`, as the e2e plugin has them.
pytest_plugins = ["harness.kube.clients"]


@dataclass
class Outcome:
    """How one check ended, for the summary: passed, skipped, failed, or error (in its
    setup or teardown)."""

    title: str
    result: str = "passed"
    reason: str = ""
    seconds: float = 0.0


OUTCOMES_KEY = pytest.StashKey[dict[str, Outcome]]()
URL_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smoke", f"{names.APP} smoke checks of a deployed gateway")
    group.addoption(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig of the target cluster [$KUBECONFIG, else ~/.kube/config]",
    )
    group.addoption(
        "--namespace", metavar="NS", help="the namespace the gateway is deployed in (required)"
    )
    group.addoption(
        "--url",
        metavar="URL",
        help="the gateway's base URL [from its Service: a LoadBalancer's address, or a "
        "NodePort on 127.0.0.1 as kind publishes it]",
    )
    group.addoption(
        "--wait",
        type=float,
        default=WAIT_S,
        metavar="SECONDS",
        help=f"how long rollouts, a LoadBalancer's address and the first answer may take "
        f"[{WAIT_S:.0f}]",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--namespace") and not config.getoption("help"):
        raise pytest.UsageError("--namespace NS is required: where the gateway is deployed")
    config.stash[OUTCOMES_KEY] = {}


def harness_call(function: Any, *args: object) -> Any:
    """A harness failure (its message is the diagnosis) fails the check without a trace."""
    try:
        return function(*args)
    except HarnessError as exc:
        failure = str(exc)
    pytest.fail(failure, pytrace=False)  # outside the handler: no "during handling" context


@pytest.fixture(scope="session")
def wait(request: pytest.FixtureRequest) -> float:
    return request.config.getoption("--wait")


@pytest.fixture(scope="session")
def api(request: pytest.FixtureRequest) -> client.ApiClient:
    kubeconfig = request.config.getoption("--kubeconfig")
    try:
        return kube.api_client(kubeconfig)
    except (ConfigException, OSError) as exc:
        failure = f"kubeconfig {kubeconfig or '(default)'}: {exc}"
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def namespace(request: pytest.FixtureRequest, core: client.CoreV1Api) -> str:
    """The namespace given, checked to exist so that no check waits in vain for it."""
    name = request.config.getoption("--namespace")
    try:
        core.read_namespace(name)
        return name
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    pytest.fail(f"namespace {name} does not exist in this cluster", pytrace=False)


@pytest.fixture(scope="session")
def gateway(
    request: pytest.FixtureRequest, core: client.CoreV1Api, namespace: str, wait: float
) -> target.Gateway:
    """The gateway at --url, or at its Service's address, with the admin token, once it
    answers: a check that talks to it means nothing before, and sends nothing."""
    url = request.config.getoption("--url") or harness_call(target.find_url, core, namespace, wait)
    url = url.rstrip("/")
    request.config.stash[URL_KEY] = url
    served = target.Gateway(url, harness_call(target.admin_token, core, namespace))
    harness_call(served.wait_ready, wait)
    return served


@pytest.fixture(scope="session")
def live(api: client.ApiClient, namespace: str) -> list[Resource]:
    """The namespace's workloads, PodDisruptionBudgets and NetworkPolicies, as the manifest
    policy reads rendered ones: what `nox -s lint` requires of the manifests must also
    hold for what the cluster runs."""
    return target.live_resources(api, namespace)


# -- the summary ---------------------------------------------------------------------------


def _title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or item.name
    title = doc.strip().splitlines()[0].rstrip(".")
    callspec = getattr(item, "callspec", None)
    return f"{title} [{callspec.id}]" if callspec else title


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Record each check's outcome and the first line of why it failed."""
    report = yield
    outcomes = item.config.stash[OUTCOMES_KEY]
    outcome = outcomes.setdefault(item.nodeid, Outcome(_title(item)))
    outcome.seconds += report.duration
    if report.skipped and outcome.result == "passed":
        outcome.result = "skipped"
    elif report.failed and outcome.result in ("passed", "skipped"):
        outcome.result = "failed" if report.when == "call" else "error"
        lines = str(call.excinfo.value).strip().splitlines() if call.excinfo else []
        outcome.reason = lines[0] if lines else report.head_line or "failed"
        if report.when == "teardown":
            outcome.reason = f"(teardown) {outcome.reason}"
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line a check: the summary a deploy job's log shows."""
    outcomes = config.stash.get(OUTCOMES_KEY, {})
    if not outcomes:
        return
    namespace = config.getoption("--namespace")
    url = config.stash.get(URL_KEY, "(no URL found)")
    terminalreporter.write_sep("=", f"smoke checks of namespace {namespace} at {url}")
    marks = {"passed": "PASS", "skipped": "SKIP", "failed": "FAIL", "error": "ERROR"}
    for outcome in outcomes.values():
        line = f"{marks[outcome.result]:<6}{outcome.seconds:6.1f} s  {outcome.title}"
        terminalreporter.write_line(f"{line}: {outcome.reason}" if outcome.reason else line)
    bad = sum(outcome.result in ("failed", "error") for outcome in outcomes.values())
    verdict = "all passed" if not bad else f"{bad} of {len(outcomes)} FAILED"
    junit = config.getoption("xmlpath", None)
    terminalreporter.write_line(
        f"smoke: {len(outcomes)} checks, {verdict}" + (f"; JUnit XML: {junit}" if junit else "")
    )
