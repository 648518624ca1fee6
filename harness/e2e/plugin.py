"""The e2e gate's pytest plugin: the cluster, the images, the deployed gateway, diagnostics.

Loaded with `-p pytest-kind -p harness.e2e.plugin` (`nox -s e2e`, `tox -e e2e`), the way
pytest-kind ships its fixtures: a test names what it needs (`kind_cluster`, `kubeconfig`,
`core`, `apps`, `networking`, `busybox_image`, `postgres_image`, `deployment`) and imports no
conftest. pytest-kind comes first so that this plugin's `kind_cluster` (pytest-kind's
cluster object, made ready by `harness.cluster`) replaces pytest-kind's own, which would
download kind and create a cluster without the NodePorts. The cluster outlives the session,
as pytest-kind's `--keep-cluster` does (accepted; it is the default here): it is this
machine's warm cluster, and `nox -s cluster -- down` deletes it.

Session order for the gateway's checks: cluster up (reused when warm) -> images built and
loaded -> namespace, Secret, manifests -> wait until serving. A harness failure fails the test
with the harness's message (a gate that skipped would pass without testing anything); when a
check of the deployment fails, the diagnostics are saved under artifacts/e2e/<namespace>/ and
the failure report names that directory. No output of the run may hold the deployment's
secrets (`watch_secrets`: the main deployment's, and the upgrade check's own): a failure report
that does is redacted, and at the end every file the run wrote under artifacts/ (the JUnit XML
included) and everything it wrote to the terminal (`terminal.TerminalCopy`) is scanned; a leak
fails the session, naming the file or check and the secret, never its value.

A check whose load fell behind with no request failed (`availability.Inconclusive`) is
reported as INCONCLUSIVE, apart from the failures; when every failed check is such, pytest
exits with INCONCLUSIVE_EXIT instead of 1: red either way (nothing was proven), but a
re-run on a quieter machine, not a defect, is what it asks for.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests
from kubernetes import client

from harness import build, cluster, gateway, kube, names, paths, secretscan
from harness.cluster import GateCluster
from harness.e2e import deploy, diagnostics, terminal, upgrade
from harness.e2e.availability import Inconclusive, LoadProbe
from harness.e2e.deploy import Credentials
from harness.steps import HarnessError

BASE_URL = f"http://127.0.0.1:{names.NODE_PORT}"
PYTEST_KIND = "pytest-kind"  # its entry point name, as `-p` takes it
# pytest-kind's options for what the harness supplies, with their defaults: a value given
# would be ignored, so it is refused.
HARNESS_SUPPLIED = {
    "cluster_name": "pytest-kind",
    "kubeconfig": None,
    "kind_image": None,
    "kind_bin": None,
    "kind_kubectl_bin": None,
}
ADMIN = "admin"  # selects the deployment's admin token
TERMINAL_LOG = "e2e-terminal.log"  # under the step logs' directory
# pytest's own statuses are 0-5; this one says: no check failed, some could not judge.
INCONCLUSIVE_EXIT = 6
T = TypeVar("T")
# `core`, `apps`, `networking` over this plugin's `api`.
pytest_plugins = ["harness.kube.clients"]


@dataclass
class Deployment:
    """What the tests need to talk to and about the deployed gateway."""

    namespace: str
    kubeconfig: Path
    api: client.ApiClient
    credentials: Credentials
    images: dict[str, str]
    base_url: str = BASE_URL  # the upgrade check's own deployment has a NodePort of its own

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def query(self, sql: str, token: str | None = ADMIN, **fields: Any) -> requests.Response:
        """POST /query through the NodePort, as a client outside would."""
        value = self.credentials.admin_token if token == ADMIN else token
        return gateway.post_query(self.base_url, sql, value, **fields)

    def query_once_served(self, sql: str, timeout_s: float = 30.0, **fields: Any) -> Any:
        """The JSON answer of POST /query, asked again after a connection-level error or a
        503 until `timeout_s`: right after PostgreSQL is back, readiness returns the pods to
        the Service and a new connection may be reset meanwhile, and a gateway whose pooled
        connections died with the old server may answer 503 (try again) once (both seen in
        runs), which is no answer about the data a check reads or the table it makes this
        way (so `sql` must bear being run twice). Any other status, or a 503 at the
        deadline, is returned as it is."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                response = self.query(sql, **fields)
            except requests.ConnectionError as error:
                if time.monotonic() > deadline:
                    raise
                print(f"{type(error).__name__} through the NodePort, asked again")
            else:
                if response.status_code != 503 or time.monotonic() > deadline:
                    return response.json()
                print(f"503 through the NodePort ({response.text[:200]}), asked again")
            time.sleep(0.5)

    def superuser_sql(self, database: str, sql: str, pod: str = names.POSTGRES_POD) -> str:
        """What `sql` prints, run by PostgreSQL's superuser over the local socket of `pod`
        (rows unaligned, tab-separated): for checks of what the server itself holds, which no
        gateway login may read or would see through its pinned session settings."""
        return kube.exec_output(
            self.core,
            self.namespace,
            pod,
            names.POSTGRES_CONTAINER,
            *("psql", "-U", names.POSTGRES_SUPERUSER, "-d", database, "-v", "ON_ERROR_STOP=1"),
            *("-At", "-F", "\t", "-c", sql),
        )

    def load_probe(self) -> LoadProbe:
        """The rollouts' load (availability.DEFAULT_CLIENTS) through this deployment's
        NodePort, with its admin token."""
        address = urlsplit(self.base_url)
        assert address.hostname and address.port, self.base_url
        return LoadProbe(address.hostname, address.port, self.credentials.admin_token)

    def gateway_pods(self) -> list[Any]:
        selector = f"{names.NAME_LABEL}={names.GATEWAY}"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]


def deployment_beside(
    request: pytest.FixtureRequest,
    kind_cluster: GateCluster,
    api: client.ApiClient,
    gateway_images: dict[str, str],
    namespace: str,
) -> Deployment:
    """What a check needs of a deployment in a namespace of its own beside the main one
    (the upgrade's, the replicated cluster's): fresh credentials, watched by the secret scan
    like the main one's, and its gateway on the second NodePort, reached on the control
    plane's address (kind publishes only the main NodePort on 127.0.0.1)."""
    host = upgrade.control_plane_address(client.CoreV1Api(api))
    deployed = Deployment(
        namespace,
        kind_cluster.kubeconfig_path,
        api,
        Credentials.random(),
        gateway_images,
        base_url=f"http://{host}:{upgrade.UPGRADE_NODE_PORT}",
    )
    watch_secrets(request.config, deployed.credentials, f"{namespace} namespace")
    return deployed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(names.APP, f"{names.APP} e2e gate")
    group.addoption(
        "--keep-namespace",
        action="store_true",
        help="leave the e2e namespace in place after the run (deleted at the next run)",
    )
    group.addoption(
        "--deploy-manifests",
        type=Path,
        default=paths.KIND_OVERLAY,
        metavar="DIR",
        help="the kustomization the checks deploy [manifests/overlays/kind]; the gate's "
        "self-test points it at a broken copy",
    )
    group.addoption(
        "--replicated-manifests",
        type=Path,
        default=paths.KIND_HA_OVERLAY,
        metavar="DIR",
        help="the kustomization the replicated-PostgreSQL checks deploy beside the main one "
        "[manifests/overlays/kind-ha]; the gate's self-test points it at a broken copy",
    )
    group.addoption(
        "--upgrade-from",
        default=upgrade.PREVIOUS_RELEASE,
        metavar="REF",
        help="the release the upgrade check deploys first and rolls back to [the newest "
        "commit that passed the gate before this one]",
    )
    group.addoption(
        "--gateway-source",
        type=Path,
        default=paths.REPO_ROOT,
        metavar="DIR",
        help="the source tree the gateway images are built from [this repository]",
    )


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """This plugin's `kind_cluster` wins only when pytest-kind was registered before it. Last
    of the plugins', so the terminal copy starts after faulthandler took its own duplicate of
    standard error (one of the copy's pipe would keep the pipe open past the end)."""
    manager = config.pluginmanager
    order = [name for name, _plugin in manager.list_name_plugin()]
    ours = manager.get_name(sys.modules[__name__])
    if PYTEST_KIND not in order or order.index(PYTEST_KIND) > order.index(ours):
        raise pytest.UsageError(
            f"load pytest-kind first: `-p {PYTEST_KIND} -p {ours}`, so that this plugin's "
            "kind_cluster fixture replaces pytest-kind's"
        )
    if config.getoption("tbstyle") == "auto":
        # Short tracebacks: no frame's arguments in a report, where a failed request's
        # frames (requests', urllib3's) print its Authorization header (seen: a connection
        # reset in the durability check; the redaction below caught it).
        config.option.tbstyle = "short"
    given = [
        "--" + option.replace("_", "-")
        for option, default in HARNESS_SUPPLIED.items()
        if config.getoption(option) != default
    ]
    if given:
        raise pytest.UsageError(
            f"{', '.join(given)}: the harness supplies the cluster's name ({names.CLUSTER}), "
            "kubeconfig, node image, kind and kubectl"
        )
    if config.getoption("capture") not in terminal.CAPTURES_SEEN:
        raise pytest.UsageError(
            "run the e2e checks with -s (as nox, tox and the self-test do): with pytest's "
            "capture on, their terminal output would bypass the secret scan"
        )
    copy = terminal.TerminalCopy(paths.log_dir() / TERMINAL_LOG)
    copy.start()
    config.stash[TERMINAL_KEY] = copy


def watch_secrets(config: pytest.Config, credentials: Credentials, label: str = "") -> None:
    """Secrets no output of this run may hold: failure reports are redacted of them, and the
    files the run wrote and its terminal output are scanned for them. `label` tells a second
    deployment's apart in a leak's report."""
    prefix = f"{label} " if label else ""
    named = {prefix + name: value for name, value in credentials.named().items()}
    config.stash.setdefault(SECRETS_KEY, {}).update(named)


def _wanted(config: pytest.Config) -> dict[str, bytes]:
    return secretscan.forms(config.stash.get(SECRETS_KEY, {}))


def run_harness(function: Callable[..., T], *args: object) -> T:
    """Run a harness step; its failure (step name, log path) fails the test, not errors it,
    and is reported once (failing outside the handler: no "during handling" repeats)."""
    try:
        return function(*args)
    except HarnessError as exc:
        failure = str(exc)
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def kind_cluster() -> GateCluster:
    """pytest-kind's fixture, made by `harness.cluster`: the host, kind and the node image made
    ready, then `KindCluster.create()` with the NodePort config creates or reuses it."""
    try:
        return cluster.ensure_cluster()
    except HarnessError as exc:
        pytest.fail(f"the kind cluster could not be brought up: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kubeconfig(kind_cluster: GateCluster) -> Path:
    return kind_cluster.kubeconfig_path


@pytest.fixture(scope="session")
def api(kubeconfig: Path) -> client.ApiClient:
    return kube.api_client(str(kubeconfig))


@pytest.fixture(scope="session")
def busybox_image(kind_cluster: GateCluster) -> str:
    """The offline busybox image, loaded into the node for test pods."""
    image = run_harness(build.busybox_image)
    run_harness(kind_cluster.load_docker_image, image)
    return image


@pytest.fixture(scope="session")
def postgres_image() -> str:
    """The PostgreSQL image the deployment runs (built, not loaded: plain docker can run it)."""
    return run_harness(build.postgres_image)


def keep_deployment(config: pytest.Config) -> bool:
    """--keep-namespace (or PG_GATEWAY_KEEP): the deployment and its images stay to look at."""
    return bool(config.getoption("--keep-namespace") or os.environ.get("PG_GATEWAY_KEEP"))


@pytest.fixture(scope="session")
def gateway_images(
    request: pytest.FixtureRequest, kind_cluster: GateCluster, postgres_image: str
) -> Iterator[dict[str, str]]:
    """Two builds of the gateway (distinct image IDs) for a rollout to a new tag, and the
    PostgreSQL image, loaded into every node; the gateway's removed from the nodes and Docker
    after the run."""
    source = request.config.getoption("--gateway-source")
    first = run_harness(build.gateway_image, f"e2e-{secrets.token_hex(3)}", source)
    second = run_harness(build.gateway_image, f"e2e-{secrets.token_hex(3)}", source)
    images = {"first": first, "second": second, "postgres": postgres_image}
    for image in images.values():
        run_harness(kind_cluster.load_docker_image, image)
    yield images
    if not keep_deployment(request.config):
        for image in (first, second):
            run_harness(kind_cluster.remove_docker_image, image)


@pytest.fixture(scope="session")
def deployment(
    request: pytest.FixtureRequest,
    kind_cluster: GateCluster,
    api: client.ApiClient,
    core: client.CoreV1Api,
    gateway_images: dict[str, str],
) -> Iterator[Deployment]:
    run_harness(deploy.delete_previous_namespaces, core)
    namespace = f"pgw-e2e-{secrets.token_hex(4)}"
    credentials = Credentials.random()
    deployed = Deployment(namespace, kind_cluster.kubeconfig_path, api, credentials, gateway_images)
    request.session.stash[DEPLOYMENT_KEY] = deployed
    watch_secrets(request.config, credentials)
    images = {
        names.GATEWAY_CONTAINER: gateway_images["first"],
        names.POSTGRES_CONTAINER: gateway_images["postgres"],
    }
    target = request.config.getoption("--deploy-manifests")
    run_harness(deploy.deploy, api, kind_cluster, namespace, target, images, credentials)
    yield deployed
    if not keep_deployment(request.config):
        core.delete_namespace(namespace)


DEPLOYMENT_KEY = pytest.StashKey[Deployment]()
DIAGNOSED_KEY = pytest.StashKey[Path]()
TIMES_KEY = pytest.StashKey[dict[str, "CheckTime"]]()
STARTED_KEY = pytest.StashKey[float]()
LEAKS_KEY = pytest.StashKey[list[secretscan.Leak]]()
SECRETS_KEY = pytest.StashKey[dict[str, str]]()  # by name: what no output may hold
TERMINAL_KEY = pytest.StashKey[terminal.TerminalCopy]()
SESSION_KEY = pytest.StashKey[pytest.Session]()
SCANNED_KEY = pytest.StashKey[int]()
SETUP_ERRORS_KEY = pytest.StashKey[dict[int, tuple[BaseException, str]]]()
FAILED_KEY = pytest.StashKey[set[str]]()
INCONCLUSIVE_KEY = pytest.StashKey[dict[str, str]]()


@dataclass
class CheckTime:
    """How long one check took, by phase (setup holds the session fixtures it was first to
    need: cluster, images, deployment), and how it ended."""

    phases: dict[str, float]
    outcome: str = "passed"

    @property
    def total(self) -> float:
        return sum(self.phases.values())


def _record_time(item: pytest.Item, report: pytest.TestReport) -> None:
    times = item.config.stash.setdefault(TIMES_KEY, {})
    entry = times.setdefault(report.nodeid, CheckTime({}))
    entry.phases[report.when] = report.duration
    if report.failed:
        entry.outcome = "failed" if report.when == "call" else "error"
    elif report.skipped and entry.outcome == "passed":
        entry.outcome = "skipped"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failed check of the deployment saves the diagnostics once and names where."""
    report = yield
    _record_time(item, report)
    session = item.session
    deployed = session.stash.get(DEPLOYMENT_KEY, None)
    if report.failed and deployed is not None and "deployment" in getattr(item, "fixturenames", ()):
        directory = session.stash.get(DIAGNOSED_KEY, None)
        if directory is None:
            directory = paths.E2E_ARTIFACTS / deployed.namespace
            diagnostics.collect(deployed.namespace, deployed.kubeconfig, directory)
            session.stash[DIAGNOSED_KEY] = directory
        report.sections.append(("diagnostics", f"saved under {directory}"))
    if report.failed and report.when == "setup" and call.excinfo is not None:
        _report_once(item.config, report, call.excinfo.value)
    if report.failed:
        item.config.stash.setdefault(FAILED_KEY, set()).add(report.nodeid)
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
        verdict = str(call.excinfo.value)
        item.config.stash.setdefault(INCONCLUSIVE_KEY, {})[report.nodeid] = verdict
        item.config.stash[TIMES_KEY][report.nodeid].outcome = "inconclusive"
        report.longrepr = verdict  # not a defect's traceback
    if report.failed:
        _redact(session, report)
    return report


def _report_once(config: pytest.Config, report: pytest.TestReport, error: BaseException) -> None:
    """pytest raises a session fixture's failure (a deploy that failed, with why) again at
    the setup of every check that needs it, without running it again: it is reported in
    full at the first, and by reference after."""
    first = config.stash.setdefault(SETUP_ERRORS_KEY, {})
    seen, nodeid = first.setdefault(id(error), (error, report.nodeid))
    if seen is error and nodeid != report.nodeid:
        report.longrepr = (
            f"not tried again: the same failure as at the setup of {nodeid}, which says why"
        )


def _redact(session: pytest.Session, report: pytest.TestReport) -> None:
    """A failure report holding a secret (a repr, a message) has it replaced by its name
    before anything prints or writes it, and the leak is recorded: the session fails."""
    wanted = _wanted(session.config)
    texts = [report.longreprtext, *(content for _title, content in report.sections)]
    found = sorted({name for text in texts for name in secretscan.names_in(text.encode(), wanted)})
    if not found:
        return
    report.longrepr = secretscan.redact(report.longreprtext, wanted)
    report.sections = [
        (title, secretscan.redact(content, wanted)) for title, content in report.sections
    ]
    where = f"the {report.when} report of {report.nodeid}"
    session.config.stash.setdefault(LEAKS_KEY, []).extend(secretscan.Leak(where, n) for n in found)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[STARTED_KEY] = time.time()
    session.config.stash[SESSION_KEY] = session


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Once the JUnit XML is written: the exit status says whether only inconclusive checks
    failed, and every file the run wrote under artifacts/ (diagnostics, kind's logs, step
    logs, timelines, JUnit) is scanned for the deployment's secrets (a leak: status 1)."""
    inconclusive = session.config.stash.get(INCONCLUSIVE_KEY, {})
    failed = session.config.stash.get(FAILED_KEY, set())
    only_inconclusive = bool(inconclusive) and failed <= set(inconclusive)
    if only_inconclusive and session.exitstatus == pytest.ExitCode.TESTS_FAILED:
        session.exitstatus = INCONCLUSIVE_EXIT
    wanted = _wanted(session.config)
    if not wanted:
        return
    started = session.stash[STARTED_KEY]
    files = secretscan.files_since(paths.ARTIFACTS_DIR, started)
    logs = paths.log_dir().resolve()  # elsewhere with PG_GATEWAY_ARTIFACTS
    if not logs.is_relative_to(paths.ARTIFACTS_DIR):
        files += secretscan.files_since(logs, started)
    junit = session.config.getoption("xmlpath", None)
    if junit and not Path(junit).resolve().is_relative_to(paths.ARTIFACTS_DIR):
        files.append(Path(junit).resolve())
    files = [path for path in files if path.name != TERMINAL_LOG]  # read whole at the end
    leaks = session.config.stash.setdefault(LEAKS_KEY, [])
    leaks += secretscan.scan_files(files, wanted, paths.REPO_ROOT)
    session.config.stash[SCANNED_KEY] = len(files)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line a check with its wall time, so the gate's own duration stays known."""
    _report_leaks(terminalreporter, config)
    _report_inconclusive(terminalreporter, config)
    times = config.stash.get(TIMES_KEY, {})
    if not times:
        return
    total = sum(entry.total for entry in times.values())
    terminalreporter.write_sep("=", f"check durations: {len(times)} checks in {total:.0f} s")
    for nodeid, entry in times.items():
        setup = entry.phases.get("setup", 0.0)
        terminalreporter.write_line(
            f"{entry.total:7.1f} s  {entry.outcome:<12}  {nodeid}  (setup {setup:.1f} s)"
        )


def _report_leaks(terminalreporter: Any, config: pytest.Config) -> None:
    """What the secret scan found: where, and which secret (never its value)."""
    scanned = config.stash.get(SCANNED_KEY, None)
    if scanned is None:
        return
    leaks = config.stash.get(LEAKS_KEY, [])
    if not leaks:
        terminalreporter.write_line(
            f"secret scan: no secret of the deployment in the failure reports or in the "
            f"{scanned} files this run wrote under {paths.ARTIFACTS_DIR}"
        )
        return
    terminalreporter.write_sep("!", f"SECRET LEAK: {len(leaks)} found; the session fails", red=True)
    for leak in leaks:
        terminalreporter.write_line(f"  {leak}", red=True)


def _report_inconclusive(terminalreporter: Any, config: pytest.Config) -> None:
    """The checks that could not judge, apart from the failures, and what the status means."""
    inconclusive = config.stash.get(INCONCLUSIVE_KEY, {})
    if not inconclusive:
        return
    others = config.stash.get(FAILED_KEY, set()) - set(inconclusive)
    status = "1: failures too" if others else f"{INCONCLUSIVE_EXIT}: no check failed"
    terminalreporter.write_sep(
        "!", f"INCONCLUSIVE: {len(inconclusive)} check(s) could not judge (exit status {status})"
    )
    for nodeid, verdict in inconclusive.items():
        terminalreporter.write_line(f"  {nodeid}: {verdict}", yellow=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Last, once pytest has printed everything: the terminal output is scanned (a print in a
    check, a step's message, a child's output); a leak there fails the session too."""
    copy = config.stash.get(TERMINAL_KEY, None)
    if copy is None:
        return
    copy.stop()
    wanted = _wanted(config)
    session = config.stash.get(SESSION_KEY, None)
    if not wanted or session is None:
        return
    where = f"the terminal output ({copy.path})"
    leaks = secretscan.scan_files([copy.path], wanted, paths.REPO_ROOT)
    if not leaks:
        print(f"secret scan: no secret of the run in {where}", file=sys.stderr)
        return
    print(f"SECRET LEAK in {where}; the session fails:", file=sys.stderr)
    for leak in leaks:
        print(f"  {leak}", file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
