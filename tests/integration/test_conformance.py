"""mcs-api conformance cases 1, 3-15 (``conformance/service_import.go``), ported to
kubectl against the mesh, with the suite's limits: 20 s to appear or disappear, 5 s
for "still there" / "still absent". Each runs with one central controller and with
one controller per cluster (the ``controllers`` fixture's two modes).

As in the suite, cluster1 is the first ("remote") cluster that exports; a second
export comes from cluster2, created after cluster1's import exists and 1.1 s later
(creationTimestamps have one-second resolution).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from tests.integration.conftest import Controllers, Kubectl, eventually, holds
from tests.integration.mcs_objects import (
    condition_status,
    export,
    get_import,
    service,
)

C0, C1 = "cluster1", "cluster2"


def _export_in(
    kubectl: Kubectl, ctx: str, ns: str, svc: str, spec: dict[str, Any] | None = None
) -> None:
    kubectl(ctx, "apply", "-f", "-", stdin=svc)
    kubectl(ctx, "apply", "-f", "-", stdin=export(ns, spec=spec))


def _imported_everywhere(
    kubectl: Kubectl, contexts: list[str], ns: str
) -> dict[str, dict[str, Any]]:
    return eventually(
        lambda: (
            (got := {c: get_import(kubectl, c, ns) for c in contexts}) and all(got.values()) and got
        ),
        what="ServiceImport in every cluster",
    )


def _two_clusters(
    kubectl: Kubectl,
    ns: str,
    second_svc: str,
    first_spec: dict[str, Any] | None = None,
    second_spec: dict[str, Any] | None = None,
) -> None:
    _export_in(kubectl, C0, ns, service(ns), first_spec)
    eventually(lambda: get_import(kubectl, C0, ns), what="import in cluster1")
    time.sleep(1.1)
    _export_in(kubectl, C1, ns, second_svc, second_spec)


def _gone_everywhere(kubectl: Kubectl, contexts: list[str], ns: str) -> None:
    eventually(
        lambda: all(get_import(kubectl, c, ns) is None for c in contexts), what="import deleted"
    )


def _conflict_on_both(kubectl: Kubectl, ns: str) -> None:
    for ctx in (C0, C1):
        eventually(
            lambda ctx=ctx: condition_status(kubectl, ctx, ns, "Conflict") == "True",
            what=f"Conflict on {ctx}",
        )


def _sorted_ports(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(ports, key=lambda p: p.get("name", "").lower())


def test_01_import_lives_while_one_cluster_exports(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _two_clusters(kubectl, namespace, service(namespace))
    eventually(
        lambda: (
            get_import(kubectl, C0, namespace)["status"]["clusters"]
            == [{"cluster": C0}, {"cluster": C1}]
        )
    )
    kubectl(C0, "delete", "serviceexport", "hello", "-n", namespace)
    holds(lambda: get_import(kubectl, C0, namespace) is not None)
    kubectl(C1, "delete", "serviceexport", "hello", "-n", namespace)
    _gone_everywhere(kubectl, contexts, namespace)


def test_03_conflicting_exported_labels(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    first = {"exportedLabels": {"from": "c0"}, "exportedAnnotations": {"from": "c0"}}
    second = {
        "exportedLabels": {"from": "c1", "extra": "c1"},
        "exportedAnnotations": {"from": "c1"},
    }
    _two_clusters(kubectl, namespace, service(namespace), first, second)
    _conflict_on_both(kubectl, namespace)
    for ctx in (C0, C1):
        imp = get_import(kubectl, ctx, namespace)
        assert imp is not None
        assert (
            imp["metadata"]["labels"]["from"] == "c0" and "extra" not in imp["metadata"]["labels"]
        )
        assert imp["metadata"]["annotations"]["from"] == "c0"
        assert (
            "dummy-svc" not in imp["metadata"]["labels"]
            and "dummy-svcexport" not in imp["metadata"]["labels"]
        )


def test_04_clusterip_imported_everywhere_and_removed(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _export_in(kubectl, C0, namespace, service(namespace))
    eventually(lambda: condition_status(kubectl, C0, namespace, "Valid") == "True")
    imports = _imported_everywhere(kubectl, contexts, namespace)
    assert {i["spec"]["type"] for i in imports.values()} == {"ClusterSetIP"}
    kubectl(C0, "delete", "serviceexport", "hello", "-n", namespace)
    _gone_everywhere(kubectl, contexts, namespace)


def test_05_to_09_service_properties(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    svc = service(
        namespace, spec={"internalTrafficPolicy": "Cluster", "trafficDistribution": "PreferClose"}
    )
    _export_in(kubectl, C0, namespace, svc)
    for imp in _imported_everywhere(kubectl, contexts, namespace).values():
        spec = imp["spec"]
        # 5: session affinity
        assert spec["sessionAffinity"] == "ClientIP"
        assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10}}
        # 6, 7: traffic policies
        assert spec["internalTrafficPolicy"] == "Cluster"
        assert spec["trafficDistribution"] == "PreferClose"
        # 9: ports, appProtocol absent
        assert _sorted_ports(spec["ports"]) == _sorted_ports(
            [
                {"name": "tcp", "port": 42, "protocol": "TCP"},
                {"name": "udp", "port": 42, "protocol": "UDP"},
            ]
        )

    # 8: one IP per family, in order (the derived Service fills them in)
    def ips_match() -> bool:
        for ctx in contexts:
            spec = get_import(kubectl, ctx, namespace)["spec"]  # type: ignore[index]
            ips, fams = spec.get("ips") or [], spec.get("ipFamilies") or []
            assert ips and len(ips) == len(fams), spec
            for ip, fam in zip(ips, fams, strict=True):
                assert f"IPv{ipaddress.ip_address(ip).version}" == fam
        return True

    eventually(ips_match, what="ips matching ipFamilies")


def test_10_port_union_is_a_conflict(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    ports = [
        {"name": "tcp", "port": 42, "protocol": "TCP"},
        {"name": "stcp", "port": 142, "protocol": "SCTP"},
    ]
    _two_clusters(kubectl, namespace, service(namespace, ports=ports))
    _conflict_on_both(kubectl, namespace)
    want = [
        {"name": "stcp", "port": 142, "protocol": "SCTP"},
        {"name": "tcp", "port": 42, "protocol": "TCP"},
        {"name": "udp", "port": 42, "protocol": "UDP"},
    ]
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: (
                _sorted_ports(get_import(kubectl, ctx, namespace)["spec"]["ports"]) == want
            )
        )


def test_11_conflicting_port_numbers(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    ports = [{"name": "tcp", "port": 43, "protocol": "TCP"}]
    _two_clusters(kubectl, namespace, service(namespace, ports=ports))
    _conflict_on_both(kubectl, namespace)
    for ctx in contexts:
        got = get_import(kubectl, ctx, namespace)
        assert got is not None
        assert _sorted_ports(got["spec"]["ports"]) == _sorted_ports(
            [
                {"name": "tcp", "port": 42, "protocol": "TCP"},
                {"name": "udp", "port": 42, "protocol": "UDP"},
            ]
        )


def test_12_13_headless(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _export_in(kubectl, C0, namespace, service(namespace, headless=True))
    imports = _imported_everywhere(kubectl, contexts, namespace)
    assert {i["spec"]["type"] for i in imports.values()} == {"Headless"}
    assert all(i["spec"].get("ipFamilies") for i in imports.values())
    holds(
        lambda: all(
            not (get_import(kubectl, c, namespace) or {}).get("spec", {}).get("ips")
            for c in contexts
        )
    )
    kubectl(C0, "delete", "serviceexport", "hello", "-n", namespace)
    _gone_everywhere(kubectl, contexts, namespace)


def test_14_external_name_is_invalid(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    _export_in(kubectl, C0, namespace, service(namespace, external=True))
    eventually(lambda: condition_status(kubectl, C0, namespace, "Valid") == "False")
    holds(lambda: get_import(kubectl, C0, namespace) is None)


def test_15_conflicting_headlessness(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    _two_clusters(kubectl, namespace, service(namespace, headless=True))
    _conflict_on_both(kubectl, namespace)
    for ctx in contexts:
        got = get_import(kubectl, ctx, namespace)
        assert got is not None and got["spec"]["type"] == "ClusterSetIP"
