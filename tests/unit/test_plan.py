"""The planning of desired objects for one key (pure code)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcs.core import api, imports, merge, plan, writes

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def _svc(ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "demo"}, "spec": {"ports": ports, **spec}}


def _export(created: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "demo",
            "creationTimestamp": created,
            "generation": 1,
        },
        "spec": spec,
    }


def _view(cluster: str, created: str = "2026-01-01T00:00:00Z", **svc_spec: Any) -> plan.ClusterView:
    ports = svc_spec.pop("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return plan.ClusterView(cluster, True, _export(created), _svc(ports, **svc_spec))


def test_derived_name_matches_mcs_api() -> None:
    assert api.derived_name("demo", "serve") == "derived-ovtkn0laet"


def test_clusterset_import_gets_ips_from_derived_service() -> None:
    ev = plan.evaluate([_view("c1", ipFamilies=["IPv4", "IPv6"])])
    assert ev.merged is not None
    before = imports.desired_import("demo", "web", ev.merged, None)
    assert "ips" not in before["spec"]
    assert before["metadata"]["labels"] == {api.MANAGED_BY: api.FIELD_MANAGER}
    assert before["metadata"]["annotations"] == {
        api.DERIVED_SERVICE: api.derived_name("demo", "web"),
        api.MERGE_RULES_ANNOTATION: merge.MERGE_RULES,
    }
    derived = {"spec": {"clusterIPs": ["10.0.0.1", "fd00::1"], "ipFamilies": ["IPv4", "IPv6"]}}
    after = imports.desired_import("demo", "web", ev.merged, derived)
    assert after["spec"]["ips"] == ["10.0.0.1", "fd00::1"]
    assert after["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert writes.import_changed(after, {"metadata": before["metadata"], "spec": before["spec"]})
    assert not writes.import_changed(after, {"metadata": after["metadata"], "spec": after["spec"]})


def test_headless_import_has_no_derived_service_and_no_ips() -> None:
    ev = plan.evaluate([_view("c1", clusterIP="None", ipFamilies=["IPv4"])])
    assert ev.merged is not None
    imp = imports.desired_import("demo", "web", ev.merged, {"spec": {"clusterIPs": ["10.0.0.1"]}})
    assert imp["spec"]["type"] == "Headless" and "ips" not in imp["spec"]
    assert imp["spec"]["ipFamilies"] == ["IPv4"]
    assert api.DERIVED_SERVICE not in imp["metadata"].get("annotations", {})
    assert imports.desired_derived_service("demo", "web", ev.merged) is None


def test_derived_service_names_unnamed_port_among_several() -> None:
    ports = [{"port": 80, "protocol": "TCP"}]
    other = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    ev = plan.evaluate([_view("c1", ports=ports), _view("c2", "2026-01-02T00:00:00Z", ports=other)])
    assert ev.merged is not None
    svc = imports.desired_derived_service("demo", "web", ev.merged)
    assert svc is not None
    assert [p["name"] for p in svc["spec"]["ports"]] == ["tcp-80", "dns"]
    assert "selector" not in svc["spec"]
    assert "ownerReferences" not in svc["metadata"]  # no write to wait for the import's uid
    assert svc["metadata"]["labels"][api.SERVICE_NAME] == "web"
    assert writes.derived_service_changed(svc, None)
    assert not writes.derived_service_changed(svc, svc)


def test_labels_we_applied_and_no_longer_want_force_a_write() -> None:
    ev = plan.evaluate([_view("c1")])
    assert ev.merged is not None
    desired = imports.desired_import("demo", "web", ev.merged, None)
    observed = {
        "metadata": {
            **desired["metadata"],
            "labels": {**desired["metadata"]["labels"], "old": "x", "someone-elses": "y"},
            "managedFields": [
                {
                    "manager": api.FIELD_MANAGER,
                    "operation": "Apply",
                    "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:old": {}, f"f:{api.MANAGED_BY}": {}}}
                    },
                },
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:someone-elses": {}}}},
                },
            ],
        },
        "spec": desired["spec"],
    }
    keys = writes.applied_keys(observed)
    assert keys == ({"old", api.MANAGED_BY}, set())
    assert writes.import_changed(desired, observed)
    observed["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"].pop("f:old")
    assert not writes.import_changed(desired, observed)


def test_export_status_reports_a_blocking_clash() -> None:
    view = _view("c1")
    ev = plan.evaluate([view])
    conds = plan.export_status(
        ev, view, NOW, blocked='ServiceImport "demo/web" in cluster "c2" ...'
    )
    assert conds is not None
    ready = next(c for c in conds if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert '"c2"' in ready["message"]


def test_invalid_export_takes_no_part() -> None:
    lonely = plan.ClusterView("c1", True, _export("2026-01-01T00:00:00Z"), None)
    ev = plan.evaluate([lonely])
    assert ev.merged is None and ev.invalid["c1"].reason == "NoService"
    conds = plan.export_status(ev, lonely, NOW)
    assert conds is not None
    assert {c["type"]: c["reason"] for c in conds} == {"Valid": "NoService", "Ready": "Pending"}


def test_owned() -> None:
    assert api.owned({"metadata": {"labels": {api.MANAGED_BY: api.FIELD_MANAGER}}})
    assert not api.owned({"metadata": {"labels": {api.MANAGED_BY: "helm"}}})
    assert not api.owned({"metadata": {}})
    assert not api.owned(None)


def test_derived_service_carries_the_oldest_exports_policies() -> None:
    """kube-proxy applies internalTrafficPolicy and trafficDistribution to the clusterset
    IP through the derived Service; a conflict keeps the oldest export's values, and a
    policy no longer wanted is removed by the next apply."""
    older = _view("c1", internalTrafficPolicy="Local", trafficDistribution="PreferSameZone")
    newer = _view("c2", "2026-01-02T00:00:00Z", trafficDistribution="PreferSameNode")
    ev = plan.evaluate([newer, older])
    assert ev.merged is not None
    svc = imports.desired_derived_service("demo", "web", ev.merged)
    assert svc is not None
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert svc["spec"]["trafficDistribution"] == "PreferSameZone"
    observed = {**svc, "spec": {**svc["spec"], "clusterIP": "10.0.0.1"}}
    assert not writes.derived_service_changed(svc, observed)
    plain = plan.evaluate([_view("c1")]).merged
    assert plain is not None
    without = imports.desired_derived_service("demo", "web", plain)
    assert without is not None and "trafficDistribution" not in without["spec"]
    assert writes.derived_service_changed(without, observed), "the policies must go"
    defaulted = {**without, "spec": {**without["spec"], "internalTrafficPolicy": "Cluster"}}
    assert not writes.derived_service_changed(without, defaulted), "the server's default"


def test_the_policys_exported_metadata_allow_list_reaches_the_exports_condition() -> None:
    """Policy.exported_metadata (mcs run --exported-metadata-allow) is applied by the
    planner: the export outside it is invalid, says why, and nothing is imported."""
    export = _export("2026-01-01T00:00:00Z")
    export["spec"] = {"exportedLabels": {"argocd.argoproj.io/instance": "prod"}}
    member = plan.MemberView(
        "c1",
        local=True,
        namespace={"metadata": {"name": "demo"}},
        export=export,
        service=_svc([{"name": "http", "port": 80, "protocol": "TCP"}]),
    )
    policy = plan.Policy(exported_metadata=("example.com/*",))
    (refused,) = plan.plan_key("demo", "web", [member], NOW, policy).clusters
    writes_ = [*refused.derived, *refused.then(None)]
    assert not any(w.resource == "serviceimports" and w.verb == "apply" for w in writes_)
    status = next(w.status for w in writes_ if w.resource == "serviceexports" and w.status)
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidExportedMetadata"
    assert "argocd.argoproj.io/instance" in valid["message"]
    (accepted,) = plan.plan_key("demo", "web", [member], NOW).clusters
    assert any(w.resource == "serviceimports" for w in [*accepted.derived, *accepted.then(None)])
