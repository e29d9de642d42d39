"""Controller behaviour beyond the conformance suite, against the real mesh, in both
deployment modes (central, per cluster)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.integration.conftest import Controllers, Kubectl, eventually, holds, kubectl_path
from tests.integration.mcs_objects import (
    condition,
    condition_status,
    export,
    get_export,
    get_import,
    service,
)

C0, C1, C2 = "cluster1", "cluster2", "cluster3"


def _apply(kubectl: Kubectl, ctx: str, *docs: str) -> None:
    for doc in docs:
        kubectl(ctx, "apply", "-f", "-", stdin=doc)


def test_every_conflict_reason_on_every_export(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    _apply(kubectl, C0, service(namespace), export(namespace))
    eventually(lambda: get_import(kubectl, C0, namespace))
    time.sleep(1.1)
    other = service(
        namespace,
        ports=[{"name": "tcp", "port": 43, "protocol": "TCP"}],
        headless=True,
        spec={"sessionAffinity": "None", "sessionAffinityConfig": None},
    )
    _apply(kubectl, C1, other, export(namespace))
    want = "PortConflict,TypeConflict,SessionAffinityConflict"
    for ctx in (C0, C1):
        cond = eventually(
            lambda ctx=ctx: (
                (c := condition(get_export(kubectl, ctx, namespace), "Conflict"))
                and c["reason"] == want
                and c
            ),
            what=f"all reasons on {ctx}",
        )
        assert cond["status"] == "True"
        assert (
            'cluster "cluster1"' in cond["message"] and "1/2 clusters disagree" in cond["message"]
        )
        valid = condition(get_export(kubectl, ctx, namespace), "Valid")
        assert valid is not None and valid["status"] == "True"


def test_conflict_events(controllers: Controllers, kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, C0, service(namespace), export(namespace))
    eventually(lambda: get_import(kubectl, C0, namespace))
    time.sleep(1.1)
    _apply(kubectl, C1, service(namespace, ports=[{"name": "tcp", "port": 43, "protocol": "TCP"}]))
    _apply(kubectl, C1, export(namespace))

    def reasons() -> list[str]:
        events = kubectl.json(
            C0,
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.kind=ServiceExport",
        )["items"]
        return sorted(e["reason"] for e in events)

    eventually(lambda: reasons() == ["ConflictDetected"], what="a ConflictDetected event")
    described = kubectl(C0, "describe", "serviceexport", "hello", "-n", namespace).stdout
    assert "ConflictDetected" in described and "PortConflict" in described
    kubectl(C1, "delete", "serviceexport", "hello", "-n", namespace)
    eventually(
        lambda: reasons() == ["ConflictDetected", "ConflictResolved"], what="ConflictResolved"
    )
    time.sleep(6)  # a resync later: still one event per transition
    assert reasons() == ["ConflictDetected", "ConflictResolved"]


def test_no_service_then_valid(controllers: Controllers, kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, C0, export(namespace))
    cond = eventually(lambda: condition(get_export(kubectl, C0, namespace), "Valid"))
    assert (cond["status"], cond["reason"]) == ("False", "NoService")
    holds(lambda: get_import(kubectl, C0, namespace) is None, duration=2)
    _apply(kubectl, C0, service(namespace))
    eventually(lambda: condition(get_export(kubectl, C0, namespace), "Valid")["status"] == "True")  # type: ignore[index]
    eventually(lambda: get_import(kubectl, C1, namespace))


def test_namespace_missing_in_one_cluster(controllers: Controllers, kubectl: Kubectl) -> None:
    ns = f"partial-{int(time.time() * 1000) % 10**8}"
    for ctx in (C0, C1):
        kubectl(ctx, "create", "namespace", ns)
    try:
        applied_in_c2 = {"cluster": C2, "verb": "patch", "resource": "serviceimports"}
        writes_to_c2 = controllers.metric("mcs_api_writes_total", **applied_in_c2)
        _apply(kubectl, C0, service(ns), export(ns))
        eventually(lambda: get_import(kubectl, C1, ns))
        controllers.full_pass()  # every key reconciled again since
        # no import was applied where the namespace does not exist (a failed
        # attempt would still count as a write)
        assert controllers.metric("mcs_api_writes_total", **applied_in_c2) == writes_to_c2
        kubectl(C2, "create", "namespace", ns)
        eventually(lambda: get_import(kubectl, C2, ns), what="import once the namespace exists")
    finally:
        for ctx in (C0, C1, C2):
            kubectl(
                ctx,
                "delete",
                "serviceexports,services,serviceimports",
                "--all",
                "-n",
                ns,
                "--wait=false",
                check=False,
            )


def test_port_change_propagates(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _apply(kubectl, C0, service(namespace), export(namespace))
    for ctx in contexts:
        eventually(lambda ctx=ctx: get_import(kubectl, ctx, namespace))
    _apply(
        kubectl,
        C0,
        service(
            namespace,
            ports=[{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
        ),
    )
    want = [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
    for ctx in contexts:
        eventually(lambda ctx=ctx: get_import(kubectl, ctx, namespace)["spec"]["ports"] == want)  # type: ignore[index]
        derived = get_import(kubectl, ctx, namespace)["metadata"]["annotations"][
            "multicluster.kubernetes.io/derived-service"
        ]  # type: ignore[index]
        svc = kubectl.json(ctx, "get", "service", derived, "-n", namespace)
        assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 8080)]


def test_unowned_import_left_alone_and_reported(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    manual = json.dumps(
        {
            "apiVersion": "multicluster.x-k8s.io/v1beta1",
            "kind": "ServiceImport",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {"type": "Headless", "ports": [{"port": 1, "protocol": "TCP"}]},
        }
    )
    _apply(kubectl, C1, manual)
    before = get_import(kubectl, C1, namespace)
    _apply(kubectl, C0, service(namespace), export(namespace))
    ready = eventually(
        lambda: (
            (c := condition(get_export(kubectl, C0, namespace), "Ready"))
            and c["reason"] == "Failed"
            and c
        ),
        what="Ready=Failed naming the clash",
    )
    assert ready["status"] == "False" and '"cluster2"' in ready["message"]
    eventually(lambda: get_import(kubectl, C2, namespace))  # other clusters still get theirs
    after = get_import(kubectl, C1, namespace)
    assert after is not None and before is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # the clash gone, the export becomes ready and cluster2 gets our import
    kubectl(C1, "delete", "serviceimport", "hello", "-n", namespace)
    eventually(lambda: condition(get_export(kubectl, C0, namespace), "Ready")["status"] == "True")  # type: ignore[index]
    eventually(
        lambda: (
            (get_import(kubectl, C1, namespace) or {})
            .get("metadata", {})
            .get("labels", {})
            .get("app.kubernetes.io/managed-by")
            == "mcs-controller"
        )
    )


def test_steady_state_makes_no_writes(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _apply(kubectl, C0, service(namespace), export(namespace))
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: (get_import(kubectl, ctx, namespace) or {}).get("spec", {}).get("ips")
        )
    controllers.assert_steady()


def test_sigkill_mid_batch_converges(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    n = 200
    docs = [
        d
        for i in range(n)
        for d in (service(namespace, f"svc-{i:03}"), export(namespace, f"svc-{i:03}"))
    ]
    victim = next(iter(controllers.procs))
    watched = contexts[-1] if controllers.mode == "central" else victim
    applying = subprocess.Popen(
        [
            kubectl_path(),
            "--kubeconfig",
            str(kubectl.kubeconfig),
            "--context",
            C0,
            "apply",
            "-f",
            "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert applying.stdin is not None
    applying.stdin.write("\n---\n".join(docs))
    applying.stdin.close()
    eventually(
        lambda: _count(kubectl, watched, namespace) > 0,
        timeout=60,
        interval=0.05,
        what="first imports",
    )
    controllers.stop(victim, signal.SIGKILL)
    assert applying.wait(timeout=120) == 0, applying.stderr.read() if applying.stderr else ""
    assert _count(kubectl, watched, namespace) < n, (
        "the controller was killed after the batch was done"
    )
    restart_args = [] if controllers.mode == "central" else ["--local", victim]
    controllers.start(victim, "--resync-period", "5", *restart_args)
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: _count(kubectl, ctx, namespace) == n,
            timeout=120,
            what=f"{n} imports in {ctx}",
        )
    for ctx in contexts:
        imports = kubectl.json(ctx, "get", "serviceimports", "-n", namespace)["items"]
        assert sorted(i["metadata"]["name"] for i in imports) == [f"svc-{i:03}" for i in range(n)]
        wanted = {
            i["metadata"]["annotations"]["multicluster.kubernetes.io/derived-service"]
            for i in imports
        }
        # every import has its derived Service, and no derived Service is left without an import
        eventually(
            lambda ctx=ctx, wanted=wanted: _derived(kubectl, ctx, namespace) == wanted, timeout=60
        )


def _derived(kubectl: Kubectl, ctx: str, ns: str) -> set[str]:
    items = kubectl.json(ctx, "get", "services", "-n", ns)["items"]
    return {s["metadata"]["name"] for s in items if s["metadata"]["name"].startswith("derived-")}


def _count(kubectl: Kubectl, ctx: str, ns: str) -> int:
    out = kubectl(ctx, "get", "serviceimports", "-n", ns, "-o", "name").stdout
    return len(out.split())


def _writes_by_kind(controllers: Controllers) -> dict[tuple[str, str, str], float]:
    """mcs_api_writes_total of every running controller, by (cluster, verb, resource)."""
    out: dict[tuple[str, str, str], float] = {}
    for name in controllers.procs:
        for labels, value in controllers.samples_of(name, "mcs_api_writes_total"):
            k = (labels["cluster"], labels["verb"], labels["resource"])
            out[k] = out.get(k, 0.0) + value
    return out


def _quiet(controllers: Controllers, seconds: float = 2.0) -> dict[tuple[str, str, str], float]:
    """The write counters once they have not moved for ``seconds`` (other tests' cleanup)."""
    last = _writes_by_kind(controllers)
    still = time.monotonic()
    deadline = still + 30
    while time.monotonic() - still < seconds:
        assert time.monotonic() < deadline, "the controllers never stopped writing"
        time.sleep(0.2)
        now = _writes_by_kind(controllers)
        if now != last:
            last, still = now, time.monotonic()
    return last


def test_a_new_export_makes_the_fewest_writes(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """In every cluster: the derived Service, then the import once (with the derived
    Service's IPs), then the import's status; and the export's status in its own
    cluster. Nothing else (no second apply of the import, no ownerReference update)."""
    _apply(kubectl, C0, service(namespace))
    before = _quiet(controllers)
    _apply(kubectl, C0, export(namespace))
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: (
                (condition(get_import(kubectl, ctx, namespace), "Ready") or {}).get("status")
                == "True"
            ),
            what=f"ready import in {ctx}",
        )
    eventually(lambda: condition_status(kubectl, C0, namespace, "Ready") == "True")
    after = _quiet(controllers, seconds=3.0)
    made = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    expected = {(ctx, "patch", r): 1.0 for ctx in contexts for r in ("services", "serviceimports")}
    expected |= {(ctx, "patch/status", "serviceimports"): 1.0 for ctx in contexts}
    expected[(C0, "patch/status", "serviceexports")] = 1.0
    assert made == expected
