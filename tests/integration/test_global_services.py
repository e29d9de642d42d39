"""Global services (Cilium's annotations) and the namespace policy, against the real
mesh, in both deployment modes.

What a user's kube-proxy would balance over is the set of ready addresses of every
EndpointSlice labelled ``kubernetes.io/service-name: rebel-base`` in a cluster: the
local ones (written here by hand, as the cluster's EndpointSlice controller would)
plus the remote ones mcs writes. The tests assert on that set, per cluster.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from mcs_mesh.state import MeshState
from tests.integration.conftest import Controllers, Kubectl, assert_clean_exit, eventually, holds
from tests.integration.helpers import (
    ADDRS,
    AFFINITY,
    C1,
    C2,
    C3,
    GLOBAL,
    NAME,
    SHARED,
    ask,
    behind,
    deploy,
    expect,
    global_slices,
    pods,
    rebel_base,
    records,
)
from tests.integration.mcs_objects import (
    MCS_NAME,
    SOURCE,
    condition,
    export,
    get_export,
    get_import,
)


def events(kubectl: Kubectl, ctx: str, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        ctx, "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={NAME}"
    )["items"]
    return items


def test_tutorial_steps(controllers: Controllers, kubectl: Kubectl, namespace: str) -> None:
    both = ADDRS[C1] | ADDRS[C2]
    # 1-2: rebel-base global in cluster1 and cluster2; cluster3 has a plain rebel-base.
    deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}, C3: {}})
    # 3: replies from both clusters, from either; cluster3 is not global.
    expect(kubectl, namespace, {C1: both, C2: both, C3: ADDRS[C3]})
    holds(lambda: behind(kubectl, C3, namespace) == ADDRS[C3], duration=2)
    for ctx, remote in ((C1, C2), (C2, C1)):
        (s,) = global_slices(kubectl, ctx, namespace)
        labels = s["metadata"]["labels"]
        assert labels[SOURCE] == remote and MCS_NAME not in labels
        assert labels["app.kubernetes.io/managed-by"] == "mcs-controller"
        assert s["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
        assert all("nodeName" not in e for e in s["endpoints"])
    assert global_slices(kubectl, C3, namespace) == []
    assert get_import(kubectl, C2, namespace, NAME) is None  # global is not exported
    # 4: cluster1 stops sharing.
    kubectl(C1, "annotate", "service", NAME, "-n", namespace, f"{SHARED}=false", "--overwrite")
    # 5-6: cluster1 still gets both; cluster2 only its own.
    expect(kubectl, namespace, {C1: both, C2: ADDRS[C2]})
    # 7-8: remove the annotation: both, from either cluster.
    kubectl(C1, "annotate", "service", NAME, "-n", namespace, f"{SHARED}-")
    expect(kubectl, namespace, {C1: both, C2: both, C3: ADDRS[C3]})
    # A Service that stops being global withdraws its backends everywhere.
    kubectl(C2, "annotate", "service", NAME, "-n", namespace, f"{GLOBAL}=false", "--overwrite")
    expect(kubectl, namespace, {C1: ADDRS[C1], C2: ADDRS[C2]})
    assert global_slices(kubectl, C2, namespace) == []
    kubectl(C2, "annotate", "service", NAME, "-n", namespace, f"{GLOBAL}=true", "--overwrite")
    expect(kubectl, namespace, {C1: both, C2: both})
    # ...and so does a deleted one; its orphaned remote slices go too.
    kubectl(C2, "delete", "service", NAME, "-n", namespace)
    expect(kubectl, namespace, {C1: ADDRS[C1]})
    eventually(lambda: global_slices(kubectl, C2, namespace) == [], what="no slice left in C2")


def test_legacy_annotation_names(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    deploy(
        kubectl,
        namespace,
        {
            C1: {"io.cilium/global-service": "true"},
            C2: {"io.cilium/global-service": "TRUE", "io.cilium/shared-service": "false"},
        },
    )
    expect(kubectl, namespace, {C1: ADDRS[C1], C2: ADDRS[C1] | ADDRS[C2]})


def test_third_cluster_global_too(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    every = ADDRS[C1] | ADDRS[C2] | ADDRS[C3]
    deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}, C3: {GLOBAL: "true"}})
    expect(kubectl, namespace, {C1: every, C2: every, C3: every})
    # A backend change in one cluster reaches the others.
    kubectl(C3, "apply", "-f", "-", stdin=pods(namespace, {"10.3.0.1", "10.3.0.9"}))
    expect(kubectl, namespace, {C1: every | {"10.3.0.9"}, C2: every | {"10.3.0.9"}})


def test_affinity_local_failover_and_failback(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    deploy(kubectl, namespace, {C1: {GLOBAL: "true", AFFINITY: "local"}, C2: {GLOBAL: "true"}})
    both = ADDRS[C1] | ADDRS[C2]
    expect(kubectl, namespace, {C1: ADDRS[C1], C2: both})
    holds(lambda: behind(kubectl, C1, namespace) == ADDRS[C1], duration=2)
    # The last local endpoint stops being ready: failover to cluster2.
    kubectl(C1, "apply", "-f", "-", stdin=pods(namespace, ADDRS[C1], ready=False))
    expect(kubectl, namespace, {C1: ADDRS[C2]})
    # One local endpoint is ready again: back to local only.
    kubectl(C1, "apply", "-f", "-", stdin=pods(namespace, {"10.1.0.1"}))
    expect(kubectl, namespace, {C1: {"10.1.0.1"}})
    assert global_slices(kubectl, C1, namespace) == []
    # affinity=remote cannot hide the local endpoints: say so on the Service.
    kubectl(C1, "annotate", "service", NAME, "-n", namespace, f"{AFFINITY}=remote", "--overwrite")
    expect(kubectl, namespace, {C1: {"10.1.0.1"} | ADDRS[C2]})
    found = eventually(
        lambda: [
            e for e in events(kubectl, C1, namespace) if e["reason"] == "AffinityRemoteNotEnforced"
        ],
        what="an AffinityRemoteNotEnforced Event",
    )
    assert found[0]["involvedObject"]["kind"] == "Service"


def test_headless_dns_and_hostname_clash(
    controllers: Controllers, kubectl: Kubectl, namespace: str, mesh: MeshState
) -> None:
    """Remote StatefulSet pods resolve by hostname through CoreDNS (cluster.local);
    a hostname both clusters use resolves to the local pod only, with an Event."""
    hosts = {C1: ["web-0"], C2: ["web-0", "web-1"]}
    for ctx in (C1, C2):
        kubectl(
            ctx, "apply", "-f", "-", stdin=rebel_base(namespace, {GLOBAL: "true"}, headless=True)
        )
        addrs = set(sorted(ADDRS[ctx])[: len(hosts[ctx])])
        kubectl(ctx, "apply", "-f", "-", stdin=pods(namespace, addrs, hostnames=hosts[ctx]))
    every = {"10.1.0.1", "10.2.0.1", "10.2.0.2"}
    expect(kubectl, namespace, {C1: every, C2: every})
    fqdn = f"{NAME}.{namespace}.svc.cluster.local"
    eventually(lambda: records(ask(mesh, C1, fqdn, "A"), "A") == every, what="headless A")
    assert records(ask(mesh, C1, f"web-1.{fqdn}", "A"), "A") == {"10.2.0.2"}  # remote pod
    assert records(ask(mesh, C1, f"web-0.{fqdn}", "A"), "A") == {"10.1.0.1"}  # local wins
    assert records(ask(mesh, C2, f"web-0.{fqdn}", "A"), "A") == {"10.2.0.1"}
    for ctx in (C1, C2):
        eventually(
            lambda ctx=ctx: [
                e for e in events(kubectl, ctx, namespace) if e["reason"] == "HostnameClash"
            ],
            what=f"a HostnameClash Event in {ctx}",
        )


def test_namespace_filter(controllers: Controllers, kubectl: Kubectl, namespace: str) -> None:
    both = ADDRS[C1] | ADDRS[C2]
    deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}})
    for ctx in (C1, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=export(namespace, NAME))
    expect(kubectl, namespace, {C1: both, C2: both})
    eventually(lambda: get_import(kubectl, C2, namespace, NAME) is not None)
    kubectl(C2, "annotate", "namespace", namespace, "clustermesh.cilium.io/global=false")
    # cluster2's namespace neither offers nor receives: global backends and imports alike.
    expect(kubectl, namespace, {C1: ADDRS[C1], C2: ADDRS[C2]})
    eventually(lambda: get_import(kubectl, C2, namespace, NAME) is None, what="import gone in C2")
    eventually(
        lambda: (
            (condition(get_export(kubectl, C2, namespace, NAME), "Valid") or {}).get("reason")
            == "NamespaceNotGlobal"
        )
    )
    valid = condition(get_export(kubectl, C2, namespace, NAME), "Valid")
    assert valid is not None and valid["status"] == "False"
    assert "clustermesh.cilium.io/global=true" in valid["message"]
    # cluster1's export stays valid, and its import no longer lists cluster2.
    imp = get_import(kubectl, C1, namespace, NAME)
    assert imp is not None and imp["status"]["clusters"] == [{"cluster": C1}]
    kubectl(C2, "annotate", "namespace", namespace, "clustermesh.cilium.io/global-")
    expect(kubectl, namespace, {C1: both, C2: both})
    eventually(
        lambda: (
            (condition(get_export(kubectl, C2, namespace, NAME), "Valid") or {}).get("status")
            == "True"
        )
    )


@pytest.mark.parametrize("ns", ["kube-system", "kube-public"])
def test_deny_list(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], ns: str
) -> None:
    name = f"probe-{controllers.mode}"
    svc = json.loads(rebel_base(ns, {GLOBAL: "true"}))
    svc["metadata"]["name"] = name
    try:
        for ctx in (C1, C2):  # global, with endpoints: would be shared if not excluded
            kubectl(ctx, "apply", "-f", "-", stdin=json.dumps(svc))
            kubectl(ctx, "apply", "-f", "-", stdin=pods(ns, ADDRS[ctx], name=name))
        kubectl(C1, "apply", "-f", "-", stdin=export(ns, name))
        eventually(
            lambda: (
                (condition(get_export(kubectl, C1, ns, name), "Valid") or {}).get("reason")
                == "NamespaceExcluded"
            ),
            what="Valid=False/NamespaceExcluded",
        )
        valid = condition(get_export(kubectl, C1, ns, name), "Valid")
        assert valid is not None and valid["status"] == "False"
        assert "--exclude-namespaces" in valid["message"]

        def nothing_written() -> bool:
            return all(
                get_import(kubectl, ctx, ns, name) is None
                and not kubectl.json(
                    ctx,
                    "get",
                    "endpointslices",
                    "-n",
                    ns,
                    "-l",
                    "app.kubernetes.io/managed-by=mcs-controller",
                )["items"]
                for ctx in contexts
            )

        holds(nothing_written, duration=3)
    finally:
        for ctx in contexts:
            kubectl(ctx, "delete", "serviceexport,service", name, "-n", ns, "--ignore-not-found")
            kubectl(ctx, "delete", "endpointslice", f"{name}-local", "-n", ns, "--ignore-not-found")


def test_global_and_exported_are_independent(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}})
    kubectl(C1, "apply", "-f", "-", stdin=export(namespace, NAME))
    both = ADDRS[C1] | ADDRS[C2]
    expect(kubectl, namespace, {C1: both, C2: both})

    def mcs_slices(ctx: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kubectl.json(
            ctx, "get", "endpointslices", "-n", namespace, "-l", f"{MCS_NAME}={NAME}"
        )["items"]
        return items

    for ctx in (C1, C2, C3):
        imported = eventually(lambda ctx=ctx: mcs_slices(ctx), what=f"MCS slices in {ctx}")
        assert {a for s in imported for e in s["endpoints"] for a in e["addresses"]} == ADDRS[C1]
        assert all(s["metadata"]["labels"]["kubernetes.io/service-name"] != NAME for s in imported)
    kubectl(C1, "delete", "serviceexport", NAME, "-n", namespace)
    eventually(lambda: mcs_slices(C2) == [], what="MCS slices gone")
    holds(lambda: behind(kubectl, C2, namespace) == both, duration=2)


def test_restart_mid_change_no_orphan_no_duplicate(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}, C3: {GLOBAL: "true"}})
    every = ADDRS[C1] | ADDRS[C2] | ADDRS[C3]
    expect(kubectl, namespace, {C1: every, C2: every, C3: every})
    victim = next(iter(controllers.procs))
    controllers.stop(victim, signal.SIGKILL)
    # Changes while (part of) the controller is down.
    kubectl(C3, "annotate", "service", NAME, "-n", namespace, f"{SHARED}=false", "--overwrite")
    kubectl(C2, "apply", "-f", "-", stdin=pods(namespace, {"10.2.0.1", "10.2.0.3"}))
    restart_args = [] if controllers.mode == "central" else ["--local", victim]
    controllers.start(victim, "--resync-period", "5", *restart_args)
    c2 = {"10.2.0.1", "10.2.0.3"}
    # cluster3 no longer shares, but still receives.
    expect(
        kubectl,
        namespace,
        {C1: ADDRS[C1] | c2, C2: ADDRS[C1] | c2, C3: ADDRS[C1] | c2 | ADDRS[C3]},
    )
    wanted_sources = {C1: {C2}, C2: {C1}, C3: {C1, C2}}
    for ctx in contexts:
        seen: list[tuple[str, str]] = [
            (s["metadata"]["labels"][SOURCE], a)
            for s in global_slices(kubectl, ctx, namespace)
            for e in s["endpoints"]
            for a in e["addresses"]
        ]
        assert len(seen) == len(set(seen)), f"duplicate endpoints in {ctx}: {seen}"
        sources = {src for src, _ in seen}
        assert sources == wanted_sources[ctx], f"orphan or missing slices in {ctx}: {sources}"


def test_steady_state_makes_no_writes(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    deploy(kubectl, namespace, {C1: {GLOBAL: "true", AFFINITY: "remote"}, C2: {GLOBAL: "true"}})
    both = ADDRS[C1] | ADDRS[C2]
    expect(kubectl, namespace, {C1: both, C2: both})
    controllers.assert_steady()


def test_opt_in_mode(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """With --namespace-opt-in only namespaces marked clustermesh.cilium.io/global=true
    take part (restarts the module's controllers with the flag, then without)."""
    assert_clean_exit(controllers.stop_all())
    try:
        controllers.start_all(contexts, "--resync-period", "5", "--namespace-opt-in")
        deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}})
        kubectl(C1, "apply", "-f", "-", stdin=export(namespace, NAME))
        eventually(
            lambda: (
                (condition(get_export(kubectl, C1, namespace, NAME), "Valid") or {}).get("reason")
                == "NamespaceNotGlobal"
            ),
            what="Valid=False/NamespaceNotGlobal",
        )
        valid = condition(get_export(kubectl, C1, namespace, NAME), "Valid")
        assert valid is not None and "--namespace-opt-in" in valid["message"]
        holds(lambda: behind(kubectl, C1, namespace) == ADDRS[C1], duration=2)
        for ctx in (C1, C2):
            kubectl(ctx, "annotate", "namespace", namespace, "clustermesh.cilium.io/global=true")
        both = ADDRS[C1] | ADDRS[C2]
        expect(kubectl, namespace, {C1: both, C2: both})
        eventually(lambda: get_import(kubectl, C2, namespace, NAME) is not None)
    finally:
        codes = controllers.stop_all()
        controllers.start_all(contexts, "--resync-period", "5")
    assert_clean_exit(codes)
