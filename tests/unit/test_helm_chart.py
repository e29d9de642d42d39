"""charts/mcs: ``helm lint``, ``helm template`` of each mode and of every optional part,
and the rendered objects against the kustomize bases of ``manifests/`` (``kubectl
kustomize``): the same RBAC rules, the same admission policy, the same CRDs, the same
Deployment apart from what the values set.

helm is built from its Go module (helm.sh/helm/v4) into the binaries' cache by
hack/helm.sh (``HELM`` wins when set); a missing helm fails these tests, never skips them.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcs
from mcs.core import trust
from tests.integration.accounts import kubectl_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mcs"
MANIFESTS = ROOT / "manifests"
NS = "mcs-system"

# charts/mcs/files/ holds copies of these, byte for byte (the chart cannot read outside
# its own folder); edit the original and copy it.
COPIES = {
    "files/crds/clusterproperties.yaml": "crds/clusterproperties.yaml",
    "files/crds/serviceexports.yaml": "crds/serviceexports.yaml",
    "files/crds/serviceimports.yaml": "crds/serviceimports.yaml",
    "files/admission-policy.yaml": "manifests/admission/policy.yaml",
    "files/prometheusrule.yaml": "manifests/monitoring/prometheusrule.yaml",
    "files/grafana-dashboard.json": "manifests/monitoring/grafana-dashboard.json",
    "files/clusterrole-local.yaml": "manifests/clusterrole-local/clusterrole.yaml",
    "files/clusterrole-remote.yaml": "manifests/remote/clusterrole.yaml",
}

PER_CLUSTER = {"mode": "per-cluster", "members": {"kubeconfig": "k", "localContext": "c1"}}
CENTRAL = {"mode": "central", "members": {"kubeconfig": "k"}}


@cache
def helm() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"helm is missing and could not be built (hack/helm.sh): {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def run_helm(*args: str, values: dict[str, Any] | None = None, tmp: Path) -> str:
    cmd = [helm(), *args]
    if values is not None:
        # JSON, a subset of YAML whose strings are all quoted (a key n or y written
        # bare is a boolean to helm's YAML 1.1 reader)
        path = tmp / f"values-{len(list(tmp.iterdir()))}.json"
        path.write_text(json.dumps(values))
        cmd += ["--values", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HelmError(proc.stdout + proc.stderr)
    return proc.stdout


class HelmError(AssertionError):
    pass


def render(
    values: dict[str, Any],
    tmp: Path,
    *,
    namespace: str = NS,
    kube_version: str = "1.36.0",
) -> list[dict[str, Any]]:
    out = run_helm(
        "template",
        "mcs",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        values=values,
        tmp=tmp,
    )
    return [d for d in yaml.safe_load_all(out) if d]


@cache
def kustomize(part: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl_path(), "kustomize", str(MANIFESTS / part)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def one(docs: list[dict[str, Any]] | tuple[dict[str, Any], ...], kind: str, name: str) -> Any:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return copy.deepcopy(found[0])


def kinds(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


# --------------------------------------------------------------------------- the chart itself


@pytest.mark.parametrize("copy_, original", sorted(COPIES.items()))
def test_files_are_copies_of_the_kustomize_sources(copy_: str, original: str) -> None:
    assert (CHART / copy_).read_bytes() == (ROOT / original).read_bytes(), (
        f"charts/mcs/{copy_} drifted from {original}: cp {original} charts/mcs/{copy_}"
    )


def test_every_crd_of_crds_is_in_the_chart() -> None:
    listed = yaml.safe_load((ROOT / "crds" / "kustomization.yaml").read_text())["resources"]
    assert {f"files/crds/{r}" for r in listed} == {c for c in COPIES if c.startswith("files/crds/")}


def test_chart_version_is_mcs_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == mcs.__version__
    assert chart["version"] == mcs.__version__


@pytest.mark.parametrize("values", [PER_CLUSTER, CENTRAL], ids=["per-cluster", "central"])
def test_helm_lint(values: dict[str, Any], tmp: Path) -> None:
    out = run_helm("lint", "--strict", str(CHART), values=values, tmp=tmp)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({**PER_CLUSTER, "mode": "hub"}, "/mode"),
        ({**PER_CLUSTER, "image": {"digest": "latest"}}, "/image/digest"),
        ({**PER_CLUSTER, "memberCIDRs": {"c1": ["10.0.0.0"]}}, "/memberCIDRs/c1/0"),
        ({**PER_CLUSTER, "replica": 3}, "additional properties 'replica'"),
        ({**PER_CLUSTER, "namespaces": {"exclude": ["Not_A_Name"]}}, "/namespaces/exclude/0"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str, tmp: Path) -> None:
    with pytest.raises(HelmError, match=re.escape(complaint)):
        render(values, tmp)


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"mode": "central"}, "members.existingSecret"),
        ({"mode": "per-cluster", "members": {"kubeconfig": "k"}}, "members.localContext"),
    ],
)
def test_members_are_required(values: dict[str, Any], complaint: str, tmp: Path) -> None:
    with pytest.raises(HelmError, match=re.escape(complaint)):
        render(values, tmp)


# --------------------------------------------------------------------------- each mode

CORE = {
    ("CustomResourceDefinition", "serviceexports.multicluster.x-k8s.io"),
    ("CustomResourceDefinition", "serviceimports.multicluster.x-k8s.io"),
    ("CustomResourceDefinition", "clusterproperties.about.k8s.io"),
    ("ServiceAccount", "mcs-controller"),
    ("ClusterRole", "mcs-controller-local"),
    ("ClusterRoleBinding", "mcs-controller-local"),
    ("Role", "mcs-controller-leader-election"),
    ("RoleBinding", "mcs-controller-leader-election"),
    ("ValidatingAdmissionPolicy", "mcs-controller-writes"),
    ("ValidatingAdmissionPolicyBinding", "mcs-controller-writes"),
    ("Deployment", "mcs-controller"),
    ("Service", "mcs-controller-metrics"),
    ("PodDisruptionBudget", "mcs-controller"),
    ("NetworkPolicy", "mcs-controller"),
    ("Secret", "mcs-remote-kubeconfigs"),
    ("ServiceAccount", "mcs-remote-reader"),
    ("ClusterRole", "mcs-controller-remote"),
    ("ClusterRoleBinding", "mcs-remote-reader"),
}


@pytest.mark.parametrize("values", [PER_CLUSTER, CENTRAL], ids=["per-cluster", "central"])
def test_template_renders_the_kustomize_objects(values: dict[str, Any], tmp: Path) -> None:
    """Each mode renders what ``manifests/`` plus ``manifests/remote/`` hold (the
    Namespace aside: Helm's is the release namespace), and the members Secret."""
    docs = render(values, tmp)
    assert kinds(docs) == CORE
    base = {
        (d["kind"], d["metadata"]["name"])
        for part in ("", "remote", "../crds")  # the CRDs are their own kustomize base
        for d in kustomize(part)
        if d["kind"] != "Namespace"
    }
    assert kinds(docs) - {("Secret", "mcs-remote-kubeconfigs")} == base
    for d in docs:
        if d["kind"] in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in d["metadata"], d["metadata"]
        elif not d["kind"].startswith("ValidatingAdmissionPolicy"):
            assert d["metadata"]["namespace"] == NS, d["metadata"]
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mcs"


def test_modes_reach_the_secret(tmp: Path) -> None:
    per = one(render(PER_CLUSTER, tmp), "Secret", "mcs-remote-kubeconfigs")["stringData"]
    assert per == {
        "mode": "per-cluster",
        "local-context": "c1",
        "member-cidrs": "",
        "kubeconfig": "k",
    }
    central = {**CENTRAL, "members": {"kubeconfig": "k", "localContext": "c1"}}
    got = one(render(central, tmp), "Secret", "mcs-remote-kubeconfigs")["stringData"]
    assert got["mode"] == "central"
    assert got["local-context"] == "", "central mode writes to every member: no --local"


def test_existing_secret(tmp: Path) -> None:
    docs = render({"mode": "central", "members": {"existingSecret": "from-join"}}, tmp)
    assert not [d for d in docs if d["kind"] == "Secret"]
    pod = one(docs, "Deployment", "mcs-controller")["spec"]["template"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in pod["spec"]["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == dict.fromkeys(["MCS_MODE", "MCS_LOCAL_CONTEXT", "MCS_MEMBER_CIDRS"], "from-join")
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "from-join"
    assert "checksum/members" not in pod["metadata"]["annotations"]


def test_central_member_without_controller(tmp: Path) -> None:
    """A member a central controller writes to: what manifests/central-member/ applies."""
    values = {"controller": {"enabled": False}, "centralWriter": {"enabled": True}}
    docs = render({**values, "remoteReader": {"enabled": False}}, tmp)
    base = {
        (d["kind"], d["metadata"]["name"])
        for part in ("central-member", "../crds")
        for d in kustomize(part)
    }
    assert kinds(docs) == base - {("Namespace", NS)}
    for kind in ("ClusterRoleBinding", "Role", "RoleBinding"):
        got = one(docs, kind, _writer_name(kind))
        want = one(kustomize("central-member"), kind, _writer_name(kind))
        assert _rbac_effect(got) == _rbac_effect(want)


def _writer_name(kind: str) -> str:
    return "mcs-central-writer" + ("-leader-election" if kind.startswith("Role") else "")


# --------------------------------------------------------------------------- same effect


def _rbac_effect(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in ("rules", "roleRef", "subjects", "automountServiceAccountToken")}


@pytest.mark.parametrize(
    "kind, name, part",
    [
        ("ClusterRole", "mcs-controller-local", ""),
        ("ClusterRoleBinding", "mcs-controller-local", ""),
        ("Role", "mcs-controller-leader-election", ""),
        ("RoleBinding", "mcs-controller-leader-election", ""),
        ("ServiceAccount", "mcs-controller", ""),
        ("ClusterRole", "mcs-controller-remote", "remote"),
        ("ClusterRoleBinding", "mcs-remote-reader", "remote"),
        ("ServiceAccount", "mcs-remote-reader", "remote"),
    ],
)
def test_rbac_is_the_kustomize_rbac(kind: str, name: str, part: str, tmp: Path) -> None:
    got = one(render(PER_CLUSTER, tmp), kind, name)
    assert _rbac_effect(got) == _rbac_effect(one(kustomize(part), kind, name))


def _spaces(x: Any) -> Any:
    """Runs of whitespace as one space, in every string: kustomize re-serialises the
    policy's folded (``>-``) CEL with extra blank lines, which CEL ignores."""
    if isinstance(x, str):
        return " ".join(x.split())
    if isinstance(x, list):
        return [_spaces(v) for v in x]
    if isinstance(x, dict):
        return {k: _spaces(v) for k, v in x.items()}
    return x


def test_admission_policy_is_the_kustomize_policy(tmp: Path) -> None:
    docs = render(PER_CLUSTER, tmp)
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        got = one(docs, kind, "mcs-controller-writes")["spec"]
        assert _spaces(got) == _spaces(one(kustomize(""), kind, "mcs-controller-writes")["spec"])
        # and, to the character, the policy of the file (as a YAML parser reads it)
        original = yaml.safe_load_all((MANIFESTS / "admission" / "policy.yaml").read_text())
        assert got == next(d for d in original if d["kind"] == kind)["spec"]


def test_admission_policy_follows_the_release_namespace(tmp: Path) -> None:
    """The policy's CEL names the controller's ServiceAccounts and protects its namespace:
    in another namespace, both follow (kustomize cannot do that)."""
    docs = render(PER_CLUSTER, tmp, namespace="mcs")
    policy = json.dumps(one(docs, "ValidatingAdmissionPolicy", "mcs-controller-writes"))
    assert "mcs-system" not in policy
    assert "system:serviceaccount:mcs:mcs-controller" in policy
    assert "'kube-node-lease', 'mcs'" in policy


@pytest.mark.parametrize(
    "values, kube_version, present",
    [
        (PER_CLUSTER, "1.30.0", True),
        (PER_CLUSTER, "1.29.9", False),
        ({**PER_CLUSTER, "admissionPolicy": {"enabled": False}}, "1.36.0", False),
    ],
)
def test_admission_policy_on_off(
    values: dict[str, Any], kube_version: str, present: bool, tmp: Path
) -> None:
    docs = render(values, tmp, kube_version=kube_version)
    policies = {d["kind"] for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")}
    assert bool(policies) == present
    assert ("Deployment", "mcs-controller") in kinds(docs)


def test_crds_are_the_kustomize_crds_and_kept(tmp: Path) -> None:
    docs = render(PER_CLUSTER, tmp)
    for want in kustomize("../crds"):
        got = one(docs, "CustomResourceDefinition", want["metadata"]["name"])
        assert got["spec"] == want["spec"]
        assert got["metadata"]["annotations"] == {
            **want["metadata"].get("annotations", {}),
            "helm.sh/resource-policy": "keep",
        }
        assert want["metadata"].get("labels", {}).items() <= got["metadata"]["labels"].items()


def test_crds_optional(tmp: Path) -> None:
    off = render({**PER_CLUSTER, "crds": {"install": False}}, tmp)
    assert not [d for d in off if d["kind"] == "CustomResourceDefinition"]
    loose = render({**PER_CLUSTER, "crds": {"keep": False}}, tmp)
    crds = [d for d in loose if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 3
    assert all("helm.sh/resource-policy" not in d["metadata"].get("annotations", {}) for d in crds)


def test_deployment_is_the_kustomize_deployment(tmp: Path) -> None:
    """The same Pod apart from what the values set: the image (tag), the log level, the
    Lease name flag (the kustomize base uses the default), the chart's own labels and the
    checksum annotation."""
    got = one(render(PER_CLUSTER, tmp), "Deployment", "mcs-controller")
    want = one(kustomize(""), "Deployment", "mcs-controller")
    assert got["spec"]["replicas"] == want["spec"]["replicas"]
    assert got["spec"]["selector"] == want["spec"]["selector"]
    gpod, wpod = got["spec"]["template"], want["spec"]["template"]
    gc, wc = gpod["spec"]["containers"][0], wpod["spec"]["containers"][0]
    values_only = {"--log-level=info", "--leader-elect-resource-name=mcs-controller"}
    assert [a for a in gc["args"] if a not in values_only] == wc["args"]
    assert {e["name"]: e for e in gc["env"]} == {e["name"]: e for e in wc["env"]}
    for key in ("ports", "livenessProbe", "readinessProbe", "resources", "securityContext"):
        assert gc[key] == wc[key], key
    assert gc["volumeMounts"] == wc["volumeMounts"]
    assert gc["image"] == f"mcs:{mcs.__version__}"
    for key in ("securityContext", "volumes", "topologySpreadConstraints", "serviceAccountName"):
        assert gpod["spec"][key] == wpod["spec"][key], key
    for key in ("automountServiceAccountToken", "enableServiceLinks"):
        assert gpod["spec"][key] == wpod["spec"][key], key
    assert wpod["metadata"]["labels"].items() <= gpod["metadata"]["labels"].items()
    annotations = gpod["metadata"]["annotations"]
    assert annotations.pop("checksum/members")
    assert annotations == wpod["metadata"]["annotations"]


@pytest.mark.parametrize("name", ["mcs-controller-metrics"])
def test_service_and_pdb_are_the_kustomize_ones(name: str, tmp: Path) -> None:
    docs = render(PER_CLUSTER, tmp)
    assert one(docs, "Service", name)["spec"] == one(kustomize(""), "Service", name)["spec"]
    pdb = "mcs-controller"
    got = one(docs, "PodDisruptionBudget", pdb)["spec"]
    assert got == one(kustomize(""), "PodDisruptionBudget", pdb)["spec"]
    got, want = (one(d, "NetworkPolicy", pdb)["spec"] for d in (docs, kustomize("")))
    # the scraper namespaces' label is the team's new domain (mcs-controller.dev)
    got["ingress"][0]["from"][0]["namespaceSelector"] = "label"
    want["ingress"][0]["from"][0]["namespaceSelector"] = "label"
    # the kustomize base still accepts 0.1's scraper label (until 0.3); the chart is new
    # in 0.2 and has no 0.1 users to keep
    want["ingress"][0]["from"] = [
        f for f in want["ingress"][0]["from"] if "mcs.x-k8s.io/metrics-scraper" not in str(f)
    ]
    assert got == want


# --------------------------------------------------------------------------- values


def test_values_reach_the_deployment(tmp: Path) -> None:
    digest = "sha256:" + "ab" * 32
    values = {
        **PER_CLUSTER,
        "replicas": 3,
        "image": {"repository": "registry.example.com/mcs", "digest": digest},
        "leaderElection": {"resourceName": "mcs-east"},
        "namespaces": {"exclude": ["legacy", "tools"], "optIn": True},
        "resources": {"requests": {"cpu": "10m"}},
        "metrics": {"port": 9090},
        "extraArgs": ["--workers=8"],
    }
    docs = render(values, tmp)
    dep = one(docs, "Deployment", "mcs-controller")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 3
    assert c["image"] == f"registry.example.com/mcs@{digest}"
    assert c["resources"]["requests"]["cpu"] == "10m"
    for arg in (
        "--leader-elect-resource-name=mcs-east",
        "--exclude-namespaces=legacy,tools",
        "--namespace-opt-in",
        "--metrics-bind-address=:9090",
        "--workers=8",
    ):
        assert arg in c["args"]
    role = one(docs, "Role", "mcs-controller-leader-election")
    assert role["rules"][1]["resourceNames"] == ["mcs-east"]
    assert one(docs, "Service", "mcs-controller-metrics")["spec"]["ports"][0]["port"] == 9090


def test_no_leader_election_and_one_replica(tmp: Path) -> None:
    docs = render({**PER_CLUSTER, "replicas": 1, "leaderElection": {"enabled": False}}, tmp)
    args = one(docs, "Deployment", "mcs-controller")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in args["args"] if a.startswith("--leader-elect")]
    assert ("PodDisruptionBudget", "mcs-controller") not in kinds(docs)


_context = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
_net = st.one_of(
    st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(f"{a}/16", strict=False)),
    st.ip_addresses(v=6).map(lambda a: ipaddress.ip_network(f"{a}/56", strict=False)),
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(_context, st.lists(_net, min_size=1, max_size=3, unique=True), max_size=4))
def test_member_cidrs_are_what_the_controller_parses(
    tmp: Path, cidrs: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]
) -> None:
    """memberCIDRs, through the Secret's member-cidrs and $MCS_MEMBER_CIDRS, is read by
    ``mcs run --member-cidrs`` as the same ranges per context."""
    values = {**PER_CLUSTER, "memberCIDRs": {k: [str(n) for n in v] for k, v in cidrs.items()}}
    secret = one(render(values, tmp), "Secret", "mcs-remote-kubeconfigs")
    parsed = trust.parse_member_cidrs([secret["stringData"]["member-cidrs"]])
    assert parsed == {k: tuple(v) for k, v in cidrs.items()}


# --------------------------------------------------------------------------- monitoring


def test_monitoring_off_by_default(tmp: Path) -> None:
    found = {d["kind"] for d in render(PER_CLUSTER, tmp)}
    assert not found & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_monitoring_is_the_kustomize_monitoring(tmp: Path) -> None:
    on = {"enabled": True}
    values = {
        **PER_CLUSTER,
        "monitoring": {"serviceMonitor": on, "prometheusRule": on, "grafanaDashboard": on},
    }
    docs = render(values, tmp)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert (
            one(docs, kind, "mcs-controller")["spec"]
            == (one(kustomize("monitoring"), kind, "mcs-controller")["spec"])
        )
    name = "mcs-grafana-dashboard"
    dashboard, want = (one(d, "ConfigMap", name) for d in (docs, kustomize("monitoring")))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    # the same dashboard (tests/ops/test_dashboard.py checks its queries against the registry)
    assert dashboard["data"] == want["data"]
