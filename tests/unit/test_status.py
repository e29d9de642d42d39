"""``mcs status`` without a cluster: summarize, render, exit codes, and the collector's
handling of what cannot be reached (a closed port, a real ``HealthServer``)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mcs import status
from mcs.core.merge import export_conditions
from mcs.core.model import InvalidExport
from mcs.core.plan import ClusterView, evaluate
from mcs.runtime.observability import HealthServer
from mcs.status import ControllerSnapshot, MemberSnapshot, Snapshot, summarize
from mcs.status.render import console as render_console

NS, NAME = "demo", "web"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _service(port: int = 80, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"metadata": {"name": NAME, "namespace": NS}, "spec": spec}


def _export(created: str, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": NAME, "namespace": NS, "creationTimestamp": created},
        "spec": {},
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


def _import(clusters: list[str], ips: list[str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "type": "ClusterSetIP",
            "ips": ips or ["10.0.0.1"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
        "status": {"clusters": [{"cluster": c} for c in clusters]},
    }


def _member(
    cluster: str,
    *,
    export: dict[str, Any] | None = None,
    service: dict[str, Any] | None = None,
    imp: dict[str, Any] | None = None,
    namespaces: tuple[str, ...] = (NS,),
    context: str | None = None,
) -> MemberSnapshot:
    return MemberSnapshot(
        context=context or cluster,
        cluster_id=cluster,
        server=f"https://{cluster}.example:6443",
        server_version="v1.36.3",
        namespaces=frozenset(namespaces),
        exports=(export,) if export else (),
        services=(service,) if service else (),
        imports=(imp,) if imp else (),
    )


def _written(views: list[ClusterView]) -> dict[str, list[dict[str, Any]]]:
    """The conditions the controller writes on each export, per cluster."""
    ev = evaluate(views)
    out = {}
    for v in views:
        if v.export is None:
            continue
        outcome: Any = ev.invalid.get(v.cluster) or ev.merged
        out[v.cluster] = export_conditions(outcome, [], NOW)
    return out


def _conflict_snapshot(*, written: bool = True, imports: bool = True) -> Snapshot:
    """cluster1 exports port 80 (oldest), cluster2 a Headless Service on 8080."""
    raw = {
        "cluster1": (_export(T0), _service(80)),
        "cluster2": (_export(T1), _service(8080, headless=True)),
    }
    conditions = _written([ClusterView(c, True, e, s) for c, (e, s) in raw.items()])
    members = []
    # cluster2 first: the report must still list the exports oldest first.
    for c in ("cluster2", "cluster1"):
        export, service = raw[c]
        if written:
            export = _export(export["metadata"]["creationTimestamp"], conditions[c])
        members.append(
            _member(
                c,
                export=export,
                service=service,
                imp=_import(["cluster1", "cluster2"]) if imports else None,
            )
        )
    return Snapshot(members=tuple(members))


def test_conflict_reports_reasons_winner_and_the_controllers_message() -> None:
    report = summarize(_conflict_snapshot())
    [svc] = report.services
    assert (svc.namespace, svc.name, svc.state, svc.winner) == (NS, NAME, "conflict", "cluster1")
    assert [(e.cluster, e.created, e.winner) for e in svc.exports] == [
        ("cluster1", T0, True),
        ("cluster2", T1, False),
    ]
    assert all(e.state == "conflict" and e.in_sync for e in svc.exports)
    assert all(e.reason == "PortConflict,TypeConflict" for e in svc.exports)
    assert svc.exports[0].conditions["Conflict"].reason == "PortConflict,TypeConflict"
    assert svc.conflict is not None
    assert svc.conflict.reasons == ["PortConflict", "TypeConflict"]
    assert svc.conflict.fields == ["ports", "type"]
    assert (svc.conflict.winner, svc.conflict.clusters) == ("cluster1", ["cluster2"])
    # Exactly what the controller wrote on the exports.
    assert svc.conflict.message == svc.exports[1].conditions["Conflict"].message
    assert 'using values from the oldest export, in cluster "cluster1"' in svc.conflict.message
    assert report.summary.conflicts == 1 and report.summary.pending == 0
    assert status.exit_code(report, "any") == 1
    assert status.exit_code(report, "conflict") == 1
    assert status.exit_code(report, "unreachable") == 0
    assert status.exit_code(report, "never") == 0


def test_agreeing_exports_are_ok_and_exit_zero() -> None:
    views = [
        ClusterView("cluster1", True, _export(T0), _service()),
        ClusterView("cluster2", True, _export(T1), _service()),
    ]
    written = _written(views)
    members = tuple(
        _member(
            v.cluster,
            export=_export(T0 if v.cluster == "cluster1" else T1, written[v.cluster]),
            service=_service(),
            imp=_import(["cluster1", "cluster2"]),
        )
        for v in views
    )
    report = summarize(Snapshot(members))
    [svc] = report.services
    assert svc.state == "ok" and svc.conflict is None and svc.winner == "cluster1"
    assert [e.state for e in svc.exports] == ["ok", "ok"]
    assert [i.state for i in svc.imports] == ["present", "present"]
    assert svc.imports[0].ips == ["10.0.0.1"]
    assert svc.imports[0].clusters == ["cluster1", "cluster2"]
    assert status.exit_code(report, "any") == 0


def test_invalid_no_service() -> None:
    conditions = export_conditions(
        InvalidExport(cluster="cluster1", reason="NoService", message="m"), [], NOW
    )
    report = summarize(Snapshot((_member("cluster1", export=_export(T0, conditions)),)))
    [svc] = report.services
    [exp] = svc.exports
    assert svc.state == "invalid" and svc.winner is None and svc.conflict is None
    assert (exp.state, exp.reason, exp.winner, exp.in_sync) == ("invalid", "NoService", False, True)
    assert exp.message is not None and 'Service "demo/web" not found' in exp.message
    assert svc.imports == []  # nothing is exported, so no import is expected anywhere
    assert report.summary.invalid == 1
    # Invalid exports are reported, not failed on.
    assert status.exit_code(report, "any") == 0


def test_unreachable_member() -> None:
    snap = _conflict_snapshot()
    down = MemberSnapshot(
        "cluster3", "cluster3", "https://c3:6443", reachable=False, error="version: refused"
    )
    report = summarize(Snapshot((*snap.members, down)))
    member = report.members[-1]
    assert (member.reachable, member.error, member.exports, member.imports) == (
        False,
        "version: refused",
        None,
        None,
    )
    [svc] = report.services
    assert svc.unknown == ["cluster3"]
    assert svc.imports[-1].model_dump() == {
        "cluster": "cluster3",
        "context": "cluster3",
        "state": "unknown",
        "type": None,
        "ips": [],
        "ports": [],
        "clusters": [],
    }
    assert report.summary.unreachable == 1
    assert status.exit_code(report, "unreachable") == 1
    text = status.render_text(report, color=False, wide=True)
    assert re.search(r"cluster3\s+cluster3\s+unreachable", text)
    assert "cluster3: version: refused" in text


def test_missing_import_and_namespace_absent() -> None:
    snap = _conflict_snapshot(imports=False)
    c1, c2 = snap.members[1], snap.members[0]
    c1 = MemberSnapshot(**{**c1.__dict__, "imports": (_import(["cluster1", "cluster2"]),)})
    c3 = _member("cluster3")  # namespace exists, no import
    c4 = _member("cluster4", namespaces=("default",))
    report = summarize(Snapshot((c1, c2, c3, c4)))
    [svc] = report.services
    assert [(i.cluster, i.state) for i in svc.imports] == [
        ("cluster1", "present"),
        ("cluster2", "missing"),
        ("cluster3", "missing"),
        ("cluster4", "no-namespace"),
    ]
    assert report.summary.missing_imports == 2
    text = status.render_text(report, color=False)
    assert re.search(r"cluster2\s+missing", text)
    assert re.search(r"cluster4\s+no-namespace", text)


def test_conditions_not_written_yet_are_pending() -> None:
    report = summarize(_conflict_snapshot(written=False))
    assert [e.in_sync for e in report.services[0].exports] == [False, False]
    assert report.summary.pending == 2
    assert "(not reconciled yet)" in status.render_text(report, color=False)


def test_stale_conflict_condition_is_not_in_sync() -> None:
    # The controller last wrote NoConflicts; the clusterset now conflicts.
    stale = [
        {"type": "Valid", "status": "True", "reason": "Valid", "message": ""},
        {"type": "Conflict", "status": "False", "reason": "NoConflicts", "message": ""},
    ]
    snap = _conflict_snapshot()
    first = snap.members[0]
    first = MemberSnapshot(**{**first.__dict__, "exports": (_export(T1, stale),)})
    report = summarize(Snapshot((first, snap.members[1])))
    assert {e.cluster: e.in_sync for e in report.services[0].exports} == {
        "cluster1": True,
        "cluster2": False,
    }


def test_duplicate_cluster_id_is_a_member_error_and_left_out() -> None:
    snap = _conflict_snapshot()
    twin = _member("cluster1", context="other", export=_export(T0), service=_service(9999))
    report = summarize(Snapshot((*snap.members, twin)))
    assert report.members[-1].error == (
        'cluster id "cluster1" is also the id of context "cluster1"; this member is left out'
    )
    assert report.summary.member_errors == 1
    assert report.services[0].unknown == ["other"]
    assert status.exit_code(report, "unreachable") == 1


def test_import_without_export_is_unexported() -> None:
    report = summarize(Snapshot((_member("cluster1", imp=_import(["gone"])),)))
    [svc] = report.services
    assert svc.state == "unexported" and svc.exports == []
    assert [i.state for i in svc.imports] == ["unexpected"]


def test_controllers() -> None:
    snap = Snapshot(
        members=(),
        controllers=(
            ControllerSnapshot("http://a", 200, "ok\n"),
            ControllerSnapshot("http://b", 503, "not ready: caches not synced: c1/exports\n"),
            ControllerSnapshot("http://c", None, "Cannot connect to host c"),
        ),
    )
    report = summarize(snap)
    assert [(c.reachable, c.ready, c.reason) for c in report.controllers] == [
        (True, True, "ok"),
        (True, False, "caches not synced: c1/exports"),
        (False, False, "Cannot connect to host c"),
    ]
    assert report.summary.controllers_not_ready == 2
    text = status.render_text(report, color=False)
    assert re.search(r"http://b\s+-\s+not ready\s+caches not synced: c1/exports", text)
    assert re.search(r"http://c\s+-\s+unreachable\s+Cannot connect", text)


def test_json_shape_is_stable() -> None:
    snap = _conflict_snapshot()
    down = MemberSnapshot("c3", "c3", reachable=False, error="no answer within 5s")
    ctl = ControllerSnapshot("http://127.0.0.1:8081", 200, "ok\n")
    report = summarize(Snapshot((*snap.members, down), (ctl,)))
    data = json.loads(status.render(report, "json"))
    assert list(data) == [
        "members",
        "controllers",
        "services",
        "summary",
        "global_services",
        "version",
        "membership",
    ]
    assert data["membership"] == {"source": "kubeconfig", "controllers": [], "note": None}
    assert set(data["members"][0]) == {
        "context",
        "cluster_id",
        "server",
        "reachable",
        "error",
        "server_version",
        "exports",
        "imports",
        "controller_view",
    }
    assert set(data["controllers"][0]) == {
        "url",
        "reachable",
        "ready",
        "reason",
        "context",
        "pod",
        "mode",
        "leader",
        "members",
    }
    svc = data["services"][0]
    assert set(svc) == {
        "namespace",
        "name",
        "state",
        "winner",
        "exports",
        "imports",
        "conflict",
        "unknown",
    }
    assert set(svc["exports"][0]) == {
        "cluster",
        "context",
        "created",
        "state",
        "reason",
        "message",
        "winner",
        "conditions",
        "in_sync",
    }
    assert set(svc["exports"][0]["conditions"]) == {"Valid", "Ready", "Conflict"}
    assert set(svc["exports"][0]["conditions"]["Conflict"]) == {"status", "reason", "message"}
    assert set(svc["imports"][0]) == {
        "cluster",
        "context",
        "state",
        "type",
        "ips",
        "ports",
        "clusters",
    }
    assert svc["imports"][0]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "app_protocol": None}
    ]
    assert set(svc["conflict"]) == {"reasons", "fields", "winner", "clusters", "message"}
    assert data["summary"] == {
        "members": 3,
        "unreachable": 1,
        "member_errors": 0,
        "services": 1,
        "conflicts": 1,
        "invalid": 0,
        "missing_imports": 0,
        "pending": 0,
        "controllers_not_ready": 0,
        "unreachable_by_controller": 0,
    }
    assert yaml.safe_load(status.render(report, "yaml")) == data


def test_render_text_colour_only_when_asked() -> None:
    snap = _conflict_snapshot()
    down = MemberSnapshot("c3", "c3", reachable=False, error="refused")
    report = summarize(Snapshot((*snap.members, down)))
    plain = status.render_text(report, color=False)
    coloured = status.render_text(report, color=True)
    assert "\x1b[" not in plain
    assert ANSI.sub("", coloured) == plain
    # rich colours a whole cell, padding included
    assert re.search(r"\x1b\[32mok *\x1b\[0m", coloured)  # reachable members
    assert "\x1b[33mconflict\x1b[0m" in coloured
    assert re.search(r"\x1b\[31munreachable *\x1b\[0m", coloured)
    assert f"{NS}/{NAME}  conflict  PortConflict,TypeConflict  winner cluster1" in plain
    wide = status.render_text(report, color=False, wide=True)
    assert wide.index("cluster1  2026-01-01T00:00:00Z") < wide.index("cluster2  2026-01")
    assert "conflict: Conflicting ports, type: 1/2 clusters disagree" in plain
    assert plain.endswith("\n")


def test_render_text_empty() -> None:
    text = status.render_text(summarize(Snapshot(())), color=False)
    assert "no exported services" in text


def test_parser_defaults_and_flags() -> None:
    parser = argparse.ArgumentParser()
    status.add_status_parser(parser.add_subparsers())
    args = parser.parse_args(["status"])
    got = (args.output, args.fail_on, args.namespace, args.controller)
    assert got == ("table", "any", None, [])
    assert args.func is not None
    argv = "status -o json -n x --controller http://a --controller http://b --fail-on never"
    args = parser.parse_args([*argv.split(), "--cluster-id", "c1=one", "--no-color"])
    assert (args.output, args.namespace, args.controller) == ("json", "x", ["http://a", "http://b"])
    assert (args.fail_on, args.cluster_id, args.no_color) == ("never", ["c1=one"], True)


def test_bad_configuration_exits_2(tmp_path: Path, capsys: Any) -> None:
    parser = argparse.ArgumentParser()
    status.add_status_parser(parser.add_subparsers())
    kubeconfig = _kubeconfig(tmp_path, "https://127.0.0.1:1")
    for argv in (["--contexts", "nope"], ["--cluster-id", "nope"], ["--cluster-id", "c=Bad_"]):
        args = parser.parse_args(["status", "--kubeconfig", str(kubeconfig), *argv])
        assert args.func(args) == 2
    assert "context 'nope' is not in the kubeconfig" in capsys.readouterr().err


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


async def test_collect_records_an_unreachable_member_and_controller(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, "https://127.0.0.1:1")
    snap = await status.collect(
        str(kubeconfig), ["c"], {"c": "one"}, controllers=["http://127.0.0.1:1"], time_limit=2
    )
    [member] = snap.members
    assert (member.context, member.cluster_id, member.reachable) == ("c", "one", False)
    assert member.error is not None and member.error.startswith("version: ")
    assert member.server == "https://127.0.0.1:1"
    [ctl] = snap.controllers
    assert ctl.status is None and ctl.text


async def test_collect_reads_a_controllers_readyz() -> None:
    reason: list[str | None] = ["caches not synced: c1/exports"]
    async with HealthServer(
        ready=lambda: reason[0], health_addr=("127.0.0.1", 0), metrics_addr=None
    ) as server:
        url = "http://{}:{}".format(*server.health_address)
        snap = await status.collect("", [], {}, controllers=[url + "/"], time_limit=2)
        reason[0] = None
        ready = await status.collect("", [], {}, controllers=[url], time_limit=2)
    [not_ready] = summarize(snap).controllers
    assert (not_ready.reachable, not_ready.ready) == (True, False)
    assert not_ready.reason == "caches not synced: c1/exports"
    assert summarize(ready).controllers[0].ready


SNAPSHOTS = Path(__file__).parent / "snapshots"


def test_snapshot_of_a_conflict() -> None:
    """The whole text of ``mcs status`` on a conflict, as a pipe gets it. To accept a
    deliberate change: ``MCS_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_status.py``."""
    snap = _conflict_snapshot()
    down = MemberSnapshot("c3", "c3", reachable=False, error="no answer within 5s")
    ctl = ControllerSnapshot("http://127.0.0.1:8081", 503, "not ready: caches not synced")
    text = status.render_text(summarize(Snapshot((*snap.members, down), (ctl,))), color=False)
    golden = SNAPSHOTS / "status-conflict.txt"
    if os.environ.get("MCS_UPDATE_SNAPSHOTS"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_rich_render_styles_by_meaning() -> None:
    """The renderable draws states in their colours on a terminal, and a narrow terminal
    shortens cells instead of breaking the table's lines."""
    snap = _conflict_snapshot()
    down = MemberSnapshot("c3", "c3", reachable=False, error="refused")
    report = summarize(Snapshot((*snap.members, down)))
    console = render_console(color=True, file=io.StringIO(), width=200)
    segments = list(console.render(status.renderable(report)))
    styles = {seg.text.strip(): str(seg.style) for seg in segments if seg.text.strip()}
    assert styles["unreachable"] == "red"
    assert styles["conflict"] == "yellow"
    assert styles["PortConflict,TypeConflict"] == "yellow"
    assert styles["Members (3)"] == "bold"
    narrow = io.StringIO()
    render_console(color=False, file=narrow, width=60).print(status.renderable(report))
    member_rows = [line for line in narrow.getvalue().splitlines() if "example:6443" in line]
    assert member_rows == []  # the SERVER column is cut short ...
    assert all(len(line) <= 60 for line in narrow.getvalue().splitlines()[:5])  # ... to fit


def _global_member(cluster: str, addresses: list[str], *, shared: bool = True) -> MemberSnapshot:
    """A member whose Service ``NS/NAME`` is global, with kube's slice of ``addresses``."""
    from tests.unit.test_globalsvc import NS as GNS
    from tests.unit.test_globalsvc import kube_slice, service

    svc = service(shared=shared)
    return MemberSnapshot(
        context=cluster,
        cluster_id=cluster,
        namespaces=frozenset({GNS}),
        namespace_objects=({"metadata": {"name": GNS}},),
        services=(svc,),
        slices=(kube_slice(addresses, suffix=cluster),),
    )


def _with_remote(members: list[MemberSnapshot]) -> list[MemberSnapshot]:
    """Each member plus the remote slices the controller plans for it (`plan_cluster`)."""
    from mcs.core.globalsvc import Side, plan_cluster
    from tests.unit.test_globalsvc import NAME as GNAME
    from tests.unit.test_globalsvc import NS as GNS

    sides = {m.cluster_id: Side(m.cluster_id, m.services[0], True, list(m.slices)) for m in members}
    out = []
    for m in members:
        others = [v for c, v in sides.items() if c != m.cluster_id]
        planned = plan_cluster(GNS, GNAME, sides[m.cluster_id], others)
        out.append(
            MemberSnapshot(
                context=m.context,
                cluster_id=m.cluster_id,
                namespaces=m.namespaces,
                namespace_objects=m.namespace_objects,
                services=m.services,
                slices=(*m.slices, *planned.slices),
            )
        )
    return out


def test_global_services_show_whose_backends_each_cluster_uses() -> None:
    members = _with_remote(
        [
            _global_member("c1", ["10.1.0.1", "10.1.0.2"]),
            _global_member("c2", ["10.2.0.1"], shared=False),
        ]
    )
    report = summarize(Snapshot(tuple(members)))
    rows = {g.cluster: g for g in report.global_services}
    assert rows["c1"].backends == {"c1": 2}  # c2 is not shared: c1 uses its own only
    assert rows["c2"].backends == {"c1": 2, "c2": 1}  # unshared still receives
    assert (rows["c1"].shared, rows["c2"].shared) == (True, False)
    text = status.render_text(report, color=False)
    assert "Global services (1)" in text
    row = rows["c2"]
    line = next(x for x in text.splitlines() if f"{row.namespace}/{row.name}  c2" in x)
    assert "c1: 2, c2: 1" in line and " no " in line


def test_no_global_services_no_section() -> None:
    report = summarize(_conflict_snapshot())
    assert report.global_services == []
    assert "Global services" not in status.render_text(report, color=False)
