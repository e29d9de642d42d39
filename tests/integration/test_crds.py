"""The MCS CRDs as the real API server serves them, driven through kubectl."""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.conftest import Kubectl

CRDS = [
    "serviceexports.multicluster.x-k8s.io",
    "serviceimports.multicluster.x-k8s.io",
    "clusterproperties.about.k8s.io",
]


def test_crds_established_in_every_cluster(kubectl: Kubectl, contexts: list[str]) -> None:
    for ctx in contexts:
        for crd in CRDS:
            got = kubectl.json(ctx, "get", "crd", crd)
            conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
            assert conds["Established"] == "True", (ctx, crd, conds)


def test_cluster_id_property(kubectl: Kubectl, contexts: list[str]) -> None:
    for ctx in contexts:
        got = kubectl.json(ctx, "get", "clusterproperty", "cluster.clusterset.k8s.io")
        assert got["spec"]["value"] == ctx


def test_apply_and_list_serviceexport(kubectl: Kubectl, namespace: str) -> None:
    manifest = textwrap.dedent(f"""
        apiVersion: multicluster.x-k8s.io/v1beta1
        kind: ServiceExport
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          exportedLabels: {{tier: front}}
        """)
    out = kubectl("cluster2", "apply", "-f", "-", stdin=manifest)
    assert "serviceexport.multicluster.x-k8s.io/web created" in out.stdout
    listed = kubectl("cluster2", "get", "svcex", "-n", namespace)
    header, row = listed.stdout.split("\n")[:2]
    assert header.split() == ["NAME", "VALID", "CONFLICT", "AGE"]
    assert row.split()[0] == "web" and len(row.split()) == 2  # no conditions yet: empty cells
    # both versions read the same stored object
    v1a = kubectl.json(
        "cluster2", "get", "serviceexports.v1alpha1.multicluster.x-k8s.io", "web", "-n", namespace
    )
    v1b = kubectl.json(
        "cluster2", "get", "serviceexports.v1beta1.multicluster.x-k8s.io", "web", "-n", namespace
    )
    assert v1a["apiVersion"].endswith("/v1alpha1") and v1b["apiVersion"].endswith("/v1beta1")
    assert v1a["metadata"]["uid"] == v1b["metadata"]["uid"]
    assert v1a["spec"] == v1b["spec"] == {"exportedLabels": {"tier": "front"}}


def _import(namespace: str, name: str, spec: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: multicluster.x-k8s.io/v1alpha1
        kind: ServiceImport
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
        """) + textwrap.indent(textwrap.dedent(spec), "  ")


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("type: Foo\nports: [{port: 80}]\n", 'Unsupported value: "Foo"'),
        (
            "type: ClusterSetIP\nports: [{port: 80}]\nips: [10.0.0.1, 10.0.0.2, 10.0.0.3]\n",
            "must have at most 2 items",
        ),
        ("type: ClusterSetIP\n", "spec.ports: Required value"),
    ],
    ids=["unknown-type", "three-ips", "no-ports"],
)
def test_invalid_serviceimport_rejected(
    kubectl: Kubectl, namespace: str, spec: str, error: str
) -> None:
    out = kubectl(
        "cluster1", "apply", "-f", "-", stdin=_import(namespace, "bad", spec), check=False
    )
    assert out.returncode != 0
    assert error in out.stderr, out.stderr
    assert kubectl("cluster1", "get", "svcim", "-n", namespace, "-o", "name").stdout == ""


def test_valid_serviceimport_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    spec = "type: ClusterSetIP\nports: [{name: http, port: 80, protocol: TCP}]\nips: [10.1.2.3]\n"
    kubectl("cluster1", "apply", "-f", "-", stdin=_import(namespace, "good", spec))
    header, row = kubectl("cluster1", "get", "svcim", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "IP", "WINNER", "READY", "AGE"]
    assert row.split()[:3] == ["good", "ClusterSetIP", "10.1.2.3"]  # a value, not JSON
    assert len(row.split()) == 4  # no status yet: empty WINNER and READY cells
    wide = kubectl("cluster1", "get", "svcim", "-n", namespace, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-2:] == ["SECOND", "IP"]
