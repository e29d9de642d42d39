"""The ordered writes of one local cluster for one key (mcs.core.plan), run against a tiny
in-memory stand-in for the API server that assigns ClusterIPs like the real one."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from mcs.core import api, plan, writes

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "demo", "web"
DERIVED = api.derived_name(NS, NAME)
PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}]


class Server:
    """What one cluster holds, by (resource, name); applies, status patches, deletes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.ips = itertools.count(1)
        self.log: list[str] = []

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, name))

    def write(self, w: writes.Write) -> dict[str, Any] | None:
        self.log.append(f"{w.verb} {w.resource}")
        name = w.obj["metadata"]["name"]
        have = self.objects.get((w.resource, name))
        if w.verb == "delete":
            assert have is not None and have["metadata"]["uid"] == w.obj["metadata"]["uid"]
            del self.objects[(w.resource, name)]
            return None
        if w.verb == "status":
            assert have is not None, f"status of {w.resource}/{name} before it exists"
            have["status"] = {**have.get("status", {}), **dict(w.status or {})}
            return None
        obj = {k: v for k, v in w.obj.items()}
        obj["metadata"] = {**w.obj["metadata"], "uid": f"uid-{w.resource}-{name}"}
        if w.resource == "services" and obj["spec"].get("clusterIP") != "None":
            ip = (have or {}).get("spec", {}).get("clusterIP") or f"10.0.0.{next(self.ips)}"
            obj["spec"] = {
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                **obj["spec"],
                "clusterIP": ip,
                "clusterIPs": [ip],
            }
        if have is not None and "status" in have:
            obj["status"] = have["status"]
        self.objects[(w.resource, name)] = obj
        return obj


def export(created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS, "creationTimestamp": created, "uid": "e1"},
        "spec": {},
    }


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": NS}, "spec": {"ports": PORTS, **spec}}


NAMESPACE = {"metadata": {"name": NS}}


def run(
    server: Server,
    exported: bool = True,
    withdrawn: tuple[tuple[str, str | None], ...] = (),
    **svc: Any,
) -> list[str]:
    """Plan one reconcile of the key with ``server`` as the one local cluster (the
    exporting cluster c1 when it holds the export, else c2 beside an exporting c1) and
    carry it out the way the controller does; returns the writes."""
    exp = server.get("serviceexports", NAME)
    mine = exp is not None
    held = {
        "service_import": server.get("serviceimports", NAME),
        "derived": server.get("services", DERIVED),
    }
    members = [
        plan.MemberView(
            "c1", local=True, namespace=NAMESPACE, export=exp, service=service(**svc), **held
        )
        if mine
        else plan.MemberView(
            "c1", namespace=NAMESPACE, export=export() if exported else None, service=service(**svc)
        )
    ]
    if not mine:
        members.append(plan.MemberView("c2", local=True, namespace=NAMESPACE, **held))
    members += [
        plan.MemberView(c, withdrawn=True, withdrawn_since=since, export=export())
        for c, since in withdrawn
    ]
    (p,) = plan.plan_key(NS, NAME, members, NOW).clusters
    server.log.clear()
    derived = p.derived_observed
    for w in p.derived:
        derived = server.write(w)
    for w in p.then(derived):
        server.write(w)
    if p.in_the_way:
        server.log.append(f"in the way: {p.in_the_way}")
    return list(server.log)


def exporting_cluster() -> Server:
    server = Server()
    server.objects[("serviceexports", NAME)] = export()
    return server


def test_a_new_export_is_written_once_per_object_in_the_exporting_cluster() -> None:
    server = exporting_cluster()
    assert run(server) == [
        "apply services",  # the derived Service first: the server gives it its ClusterIP
        "apply serviceimports",  # then the import, once, with that IP
        "status serviceimports",
        "status serviceexports",
    ]
    imp = server.get("serviceimports", NAME)
    assert imp is not None
    assert imp["spec"]["ips"] == ["10.0.0.1"]
    assert imp["status"]["conditions"][0]["status"] == "True"
    assert "ownerReferences" not in server.objects[("services", DERIVED)]["metadata"]
    assert run(server) == []  # steady state


def test_a_new_export_costs_three_writes_in_another_cluster() -> None:
    server = Server()
    assert run(server) == ["apply services", "apply serviceimports", "status serviceimports"]
    assert run(server) == []


def test_headless_has_no_derived_service() -> None:
    server = exporting_cluster()
    assert run(server, clusterIP="None") == [
        "apply serviceimports",
        "status serviceimports",
        "status serviceexports",
    ]
    assert run(server, clusterIP="None") == []


def test_switch_to_headless_deletes_the_derived_service_after_the_import() -> None:
    server = exporting_cluster()
    run(server)
    assert run(server, clusterIP="None") == ["apply serviceimports", "delete services"]
    assert ("services", DERIVED) not in server.objects
    assert run(server, clusterIP="None") == []


def test_unexport_deletes_import_and_derived_service() -> None:
    server = Server()
    run(server)
    assert run(server, exported=False) == ["delete serviceimports", "delete services"]
    assert server.objects == {}
    assert run(server, exported=False) == []


def test_port_change_rewrites_derived_service_and_import_once_each() -> None:
    server = exporting_cluster()
    run(server)
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert run(server, ports=ports) == ["apply services", "apply serviceimports"]
    assert run(server, ports=ports) == []
    assert server.objects[("services", DERIVED)]["spec"]["clusterIP"] == "10.0.0.1"  # kept


def test_import_not_ours_is_left_alone_and_nothing_derived_is_made() -> None:
    server = Server()
    server.objects[("serviceimports", NAME)] = {
        "metadata": {"name": NAME, "namespace": NS, "uid": "theirs"},
        "spec": {"type": "ClusterSetIP"},
    }
    assert run(server) == []
    assert ("services", DERIVED) not in server.objects


def test_derived_service_not_ours_stops_the_plan() -> None:
    server = Server()
    server.objects[("services", DERIVED)] = {
        "metadata": {"name": DERIVED, "namespace": NS, "uid": "theirs"},
        "spec": {"ports": PORTS},
    }
    assert run(server) == [f'in the way: Service "{NS}/{DERIVED}" exists and is not ours']


def test_a_withdrawn_exporter_shows_on_the_import_once_with_one_event_each_way() -> None:
    server = Server()
    run(server)
    since = "2026-11-01T11:59:00Z"
    assert run(server, withdrawn=(("c3", since),)) == ["status serviceimports", "create events"]
    imp = server.get("serviceimports", NAME)
    assert imp is not None
    ready = next(c for c in imp["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "MemberWithdrawn" and f"c3 (since {since})" in ready["message"]
    assert run(server, withdrawn=(("c3", since),)) == []  # steady: no second Event
    assert run(server) == ["status serviceimports", "create events"]  # returned
    reasons = sorted(o["reason"] for (r, _), o in server.objects.items() if r == "events")
    assert reasons == ["MemberReturned", "MemberWithdrawn"]
