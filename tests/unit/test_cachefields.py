"""mcs.core.cachefields: informers keep what the controller reads, nothing a tenant can inflate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mcs.core import api, cachefields, imports, plan, writes


def _service(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web", "tenant-junk": "x" * 63},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 200_000,
                "service.cilium.io/global": "true",
                "io.cilium/shared-service": "false",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            **meta,
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {f"k{i}": "v" * 63 for i in range(500)},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "externalIPs": ["1.2.3.4"],
        },
        "status": {"loadBalancer": {}},
    }


def test_service_keeps_what_is_read_and_drops_the_rest() -> None:
    trimmed = cachefields.service(_service())
    assert len(json.dumps(trimmed)) < 1000
    meta = trimmed["metadata"]
    assert meta["annotations"] == {
        "service.cilium.io/global": "true",
        "io.cilium/shared-service": "false",
    }
    assert "labels" not in meta  # none of ours
    assert "resourceVersion" not in meta and "managedFields" not in meta
    assert "selector" not in trimmed["spec"] and "externalIPs" not in trimmed["spec"]
    assert trimmed["spec"]["ports"][0]["targetPort"] == 8080


def test_merge_sees_the_same_service_trimmed_or_not() -> None:
    export = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {"exportedLabels": {"tier": "front"}},
        "status": {"conditions": []},
    }
    raw = plan.ClusterView("c1", True, export=export, service=_service())
    cut = plan.ClusterView(
        "c1",
        True,
        export=cachefields.export(export),
        service=cachefields.service(_service()),
    )
    assert plan.evaluate([raw]) == plan.evaluate([cut])
    assert "annotations" not in cachefields.export(export)["metadata"]


def test_our_derived_service_trims_to_an_unchanged_one() -> None:
    ev = plan.evaluate(
        [plan.ClusterView("c1", True, export=_export(), service=_service(labels={}))]
    )
    assert ev.merged is not None
    want = imports.desired_derived_service("ns", "web", ev.merged)
    assert want is not None
    observed = json.loads(json.dumps(want))
    observed["metadata"] |= {"uid": "d1", "resourceVersion": "7"}
    observed["spec"] |= {"clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.99"]}
    assert not writes.derived_service_changed(want, cachefields.service(observed))
    assert api.owned(cachefields.service(observed))


def _export() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "creationTimestamp": datetime(2026, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }


def test_namespace_keeps_labels_filter_annotation_and_phase() -> None:
    ns = {
        "metadata": {
            "name": "team-a",
            "uid": "n1",
            "labels": {"kubernetes.io/metadata.name": "team-a", "mcs": "on"},
            "annotations": {"clustermesh.cilium.io/global": "true", "big": "x" * 100_000},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating"},
    }
    trimmed = cachefields.namespace(ns)
    assert trimmed["metadata"]["labels"] == ns["metadata"]["labels"]
    assert trimmed["metadata"]["annotations"] == {"clustermesh.cilium.io/global": "true"}
    assert trimmed["status"] == {"phase": "Terminating"}


def _import(managed_fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": "ServiceImport",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "i1",
            "resourceVersion": "9",
            "labels": {api.MANAGED_BY: "mcs-controller", "team": "a"},
            "annotations": {"note": "exported"},
            "managedFields": managed_fields,
        },
        "spec": {"type": "ClusterSetIP", "ips": ["10.96.0.9"], "ports": [{"port": 80}]},
        "status": {"clusters": [{"cluster": "c1"}]},
    }


def _entry(manager: str, labels: list[str], subresource: str | None = None) -> dict[str, Any]:
    fields = {
        "f:metadata": {
            "f:labels": {f"f:{k}": {} for k in labels},
            "f:annotations": {"f:note": {}},
        },
        "f:spec": {"f:ips": {}, "f:ports": {}, "f:type": {}},
    }
    entry = {"manager": manager, "operation": "Apply", "fieldsV1": fields, "time": "t"}
    return entry | ({"subresource": subresource} if subresource else {})


def test_import_keeps_only_the_keys_our_apply_owns() -> None:
    raw = _import(
        [
            _entry(api.FIELD_MANAGER, [api.MANAGED_BY, "team"]),
            _entry("kubectl", ["other"]),
            _entry(api.FIELD_MANAGER, ["from-status"], subresource="status"),
        ]
    )
    trimmed = cachefields.service_import(raw)
    assert writes.applied_keys(trimmed) == writes.applied_keys(raw)
    assert writes.applied_keys(trimmed) == ({api.MANAGED_BY, "team"}, {"note"})
    assert len(trimmed["metadata"]["managedFields"]) == 1
    assert "f:spec" not in json.dumps(trimmed)
    assert "resourceVersion" not in trimmed["metadata"]
    assert (trimmed["spec"], trimmed["status"]) == (raw["spec"], raw["status"])
    assert trimmed["metadata"]["labels"] == raw["metadata"]["labels"]


def test_import_without_our_apply_has_no_managed_fields() -> None:
    trimmed = cachefields.service_import(_import([_entry("kubectl", ["team"])]))
    assert "managedFields" not in trimmed["metadata"]
    assert writes.applied_keys(trimmed) == (set(), set())


def test_derived_service_carries_exported_metadata_and_drops_what_is_no_longer_exported() -> None:
    """The derived Service has the winner's exported labels and annotations (the cache
    keeps them whole for a Service of ours); one we applied and no longer want is named
    in managedFields, so its removal takes an apply."""
    export = _export() | {
        "spec": {"exportedLabels": {"tier": "db"}, "exportedAnnotations": {"a": "1"}}
    }
    ev = plan.evaluate([plan.ClusterView("c1", True, export=export, service=_service())])
    assert ev.merged is not None
    want = imports.desired_derived_service("ns", "web", ev.merged)
    assert want is not None
    assert want["metadata"]["labels"]["tier"] == "db"
    assert want["metadata"]["annotations"] == {"a": "1"}
    observed = json.loads(json.dumps(want))
    observed["metadata"]["managedFields"] = [
        {
            "manager": api.FIELD_MANAGER,
            "operation": "Apply",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:tier": {}}, "f:annotations": {"f:a": {}}}},
        }
    ]
    observed["spec"] |= {"clusterIP": "10.96.0.99"}
    cut = cachefields.service(observed)
    assert not writes.derived_service_changed(want, cut)
    bare = plan.evaluate([plan.ClusterView("c1", True, export=_export(), service=_service())])
    assert bare.merged is not None
    unexported = imports.desired_derived_service("ns", "web", bare.merged)
    assert unexported is not None and "tier" not in unexported["metadata"]["labels"]
    assert writes.derived_service_changed(unexported, cut), "a label no longer exported must go"
