"""The deployment files as a user applies them: ``manifests/`` (and its ``remote/`` and
``central-member/`` parts), ``hack/make-remote-kubeconfig.sh`` and ``examples/``.

The mesh runs Pods on kwok's simulated nodes, but no containers (there is no real
kubelet), so the controller's own Deployment is not started from its image here.
What can be checked is checked for real: the API server accepts every object (server
dry runs, Pod Security "restricted" included), the Deployment's arguments parse as
``mcs run`` flags, the RBAC roles are enough for a controller that runs with exactly
those identities, and the examples produce what their READMEs show, their
Deployments and StatefulSets running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml

from mcs.commands.run import add_run_parser
from mcs_mesh.state import MeshState
from tests.integration.accounts import MANIFESTS, ROOT, SYSTEM_NS, ServiceAccounts, kustomize
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import condition, wait_running

EXAMPLES = ROOT / "examples"
C1, C2 = "cluster1", "cluster2"
REBEL_DNS = "rebel-base.default.svc.clusterset.local"
SA_USER = f"system:serviceaccount:{SYSTEM_NS}:mcs-controller"


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(
        f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


# --------------------------------------------------------------------------- static checks


def test_deployment_arguments_are_mcs_run_flags() -> None:
    """The container's args parse with the real ``mcs run`` parser (the image's ENTRYPOINT
    is ``mcs``), after the kubelet's ``$(VAR)`` expansion."""
    docs = kustomize(MANIFESTS)
    pod = find(docs, "Deployment", "mcs-controller")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {"MCS_LOCAL_CONTEXT": "cluster1", "MCS_MODE": "per-cluster", "POD_NAMESPACE": SYSTEM_NS}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    parser = argparse.ArgumentParser(prog="mcs")
    add_run_parser(parser.add_subparsers())
    parsed = parser.parse_args(args)
    assert parsed.leader_elect and parsed.local == "cluster1"
    assert parsed.mode == "per-cluster"
    assert parsed.log_format == "json"
    assert parsed.leader_elect_resource_namespace == SYSTEM_NS
    assert (parsed.metrics_bind_address, parsed.health_probe_bind_address) == (":8080", ":8081")
    assert parsed.deprecated_flags == ()  # the shipped manifests use no deprecated flag
    # --mode comes from the Secret's key "mode", not optional (a missing key would leave
    # "$(MCS_MODE)" unexpanded)
    mode = next(e for e in container["env"] if e["name"] == "MCS_MODE")
    ref = mode["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref.get("optional", False)) == (
        "mcs-remote-kubeconfigs",
        "mode",
        False,
    )
    # every variable used in args is defined in env
    defined = {e["name"] for e in container["env"]}
    used = {v for a in container["args"] for v in re.findall(r"\$\((\w+)\)", a)}
    assert used <= defined
    mount = next(m for m in container["volumeMounts"] if m["name"] == "kubeconfigs")
    assert parsed.kubeconfig == f"{mount['mountPath']}/kubeconfig"


def test_deployment_is_hardened() -> None:
    docs = kustomize(MANIFESTS)
    deploy = find(docs, "Deployment", "mcs-controller")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert deploy["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "mcs-controller"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])  # read-only root
    metrics = find(docs, "Service", "mcs-controller-metrics")
    assert metrics["spec"]["ports"][0]["port"] == 8080
    kinds = {d["kind"] for d in docs}
    # the CRDs are their own base (crds/): `kubectl delete -k manifests/` keeps users' exports
    assert "CustomResourceDefinition" not in kinds


def test_remote_role_is_read_only() -> None:
    docs = kustomize(MANIFESTS / "remote")
    role = find(docs, "ClusterRole", "mcs-controller-remote")
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"get", "list", "watch"}
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "serviceexports",
        "serviceimports",
        "services",
        "endpointslices",
        "namespaces",
        "clusterproperties",
    }
    binding = find(docs, "ClusterRoleBinding", "mcs-remote-reader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mcs-remote-reader", "namespace": SYSTEM_NS}
    ]
    # the local role never reads Secrets either
    local = find(kustomize(MANIFESTS), "ClusterRole", "mcs-controller-local")
    assert "secrets" not in {r for rule in local["rules"] for r in rule["resources"]}


@pytest.mark.parametrize("part", ["", "remote", "central-member"])
def test_no_long_lived_tokens_and_no_unused_grants(part: str) -> None:
    """Tokens come from the TokenRequest API (hack/make-remote-kubeconfig.sh), never from
    ``kubernetes.io/service-account-token`` Secrets; the roles grant nothing the code
    does not use (events.k8s.io, Lease patch, ClusterProperty list/watch)."""
    docs = kustomize(MANIFESTS / part)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            assert "events.k8s.io" not in rule["apiGroups"], role["metadata"]["name"]
            if "leases" in rule["resources"]:
                assert "patch" not in rule["verbs"]
            if "clusterproperties" in rule["resources"]:
                assert rule["verbs"] == ["get"]
                assert rule["resourceNames"] == ["cluster.clusterset.k8s.io"]
    for sa in (d for d in docs if d["kind"] == "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]


def test_disruption_spread_and_network_policy() -> None:
    docs = kustomize(MANIFESTS)
    pdb = find(docs, "PodDisruptionBudget", "mcs-controller")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pod = find(docs, "Deployment", "mcs-controller")["spec"]["template"]
    keys = {c["topologyKey"] for c in pod["spec"]["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    policy = find(docs, "NetworkPolicy", "mcs-controller")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics"]  # the health port is reachable from no Pod
    # the cluster-scoped policy is not put in a namespace
    vap = find(docs, "ValidatingAdmissionPolicy", "mcs-controller-writes")
    assert "namespace" not in vap["metadata"]


# --------------------------------------------------------------------------- server dry runs


@pytest.fixture(scope="module")
def system_namespace(accounts: ServiceAccounts) -> str:
    """``mcs-system`` for real in every member (the harness's accounts live there): a
    server dry run of a namespaced object needs its namespace to exist, and a dry-run
    Namespace in the same apply is not created."""
    return SYSTEM_NS


def _dry_run(kubectl: Kubectl, *args: str) -> str:
    proc = kubectl(C1, "apply", "--dry-run=server", *args)
    assert "would violate PodSecurity" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "part", ["", "remote", "central-member"], ids=["manifests", "remote", "central-member"]
)
def test_kustomization_dry_run(kubectl: Kubectl, system_namespace: str, part: str) -> None:
    directory = MANIFESTS / part
    expected = len(kustomize(directory))
    out = _dry_run(kubectl, "-k", str(directory))
    assert out.count("(server dry run)") == expected, out
    # --force-conflicts: on the shared mesh, test_join's `kubectl mcs join` server-side
    # applied the same RBAC and policy first (field manager kubectl-mcs-join); this test
    # checks that the API server accepts the objects, not who owns their fields
    out = _dry_run(kubectl, "--server-side", "--force-conflicts", "-k", str(directory))
    assert out.count("(server dry run)") == expected, out


def test_example_secret_dry_run(kubectl: Kubectl, system_namespace: str) -> None:
    path = MANIFESTS / "remote-kubeconfigs.example.yaml"
    _dry_run(kubectl, "-f", str(path))
    secret = yaml.safe_load(path.read_text())
    config = yaml.safe_load(secret["stringData"]["kubeconfig"])
    names = [c["name"] for c in config["contexts"]]
    assert secret["stringData"]["local-context"] in names
    assert secret["stringData"]["mode"] == "per-cluster"


EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.yaml"))


def test_every_example_has_a_readme() -> None:
    dirs = {p.parent for p in EXAMPLE_FILES}
    assert {d.name for d in dirs} >= {"rebel-base", "conflicts", "headless"}
    for d in dirs:
        text = (d / "README.md").read_text()
        assert "kubelet" in text, f"{d}/README.md should say what the mesh cannot show"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_dry_run(kubectl: Kubectl, path: Path) -> None:
    _dry_run(kubectl, "-f", str(path))
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["metadata"].get("namespace", "default") == "default"


# --------------------------------------------------------------------------- RBAC for real


def _can(kubectl: Kubectl, ctx: str, verb: str, resource: str, *extra: str) -> bool:
    proc = kubectl(ctx, "auth", "can-i", verb, resource, "--all-namespaces", *extra, check=False)
    return proc.stdout.strip() == "yes"


def _svc(ns: str, affinity: str) -> str:
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80}],
                    "sessionAffinity": affinity,
                },
            },
            {
                "apiVersion": "multicluster.x-k8s.io/v1beta1",
                "kind": "ServiceExport",
                "metadata": {"name": "web", "namespace": ns},
            },
        ]
    )


def test_roles_are_enough_for_a_per_cluster_controller(
    kubectl: Kubectl,
    accounts: ServiceAccounts,
    namespace: str,
    tmp_path: Path,
) -> None:
    """cluster1 runs the controller as ``mcs-controller`` (the in-cluster context);
    cluster2 is read as ``mcs-remote-reader`` through the script's kubeconfig (the
    harness's per-cluster kubeconfig, ``accounts.py``). The controller must import,
    write endpoints, statuses, Events and its Lease, and delete, without a single 403."""
    config = accounts.kubeconfig(C1)
    as_sa = Kubectl(config)
    assert _can(as_sa, C1, "create", "serviceimports.multicluster.x-k8s.io")
    assert _can(as_sa, C1, "patch", "serviceexports.multicluster.x-k8s.io", "--subresource=status")
    assert not _can(as_sa, C1, "patch", "serviceexports.multicluster.x-k8s.io")
    assert not _can(as_sa, C1, "get", "secrets")
    assert _can(as_sa, C2, "watch", "endpointslices.discovery.k8s.io")
    for verb, resource in [
        ("create", "serviceimports.multicluster.x-k8s.io"),
        ("patch", "services"),
        ("delete", "endpointslices.discovery.k8s.io"),
        ("get", "secrets"),
    ]:
        assert not _can(as_sa, C2, verb, resource), f"reader may {verb} {resource}"

    kubectl(C1, "apply", "-f", "-", stdin=_svc(namespace, "None"))
    time.sleep(1.1)  # cluster1's export is the oldest
    kubectl(C2, "apply", "-f", "-", stdin=_svc(namespace, "ClientIP"))
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    kubectl(C2, "apply", "-f", "-", stdin=yaml.safe_dump(slice_))

    ctl = Controllers("per-cluster", accounts, tmp_path)
    ctl.start("rbac", "--local", C1, "--leader-elect", "--resync-period", "5")
    try:

        def imported() -> bool:
            imp = kubectl.json(C1, "get", "serviceimport", "web", "-n", namespace)
            clusters = [c["cluster"] for c in imp.get("status", {}).get("clusters", [])]
            return clusters == [C1, C2] and bool(imp["spec"].get("ips"))

        eventually(imported, what="ServiceImport with both clusters and an IP")
        eventually(
            lambda: any(
                s["metadata"]["labels"].get("multicluster.kubernetes.io/source-cluster") == C2
                for s in kubectl.json(C1, "get", "endpointslices", "-n", namespace)["items"]
            ),
            what="cluster2's endpoints imported into cluster1",
        )

        def conflict_reported() -> bool:
            exp = kubectl.json(C1, "get", "serviceexport", "web", "-n", namespace)
            cond = condition(exp, "Conflict")
            return bool(cond and cond["reason"] == "SessionAffinityConflict")

        eventually(conflict_reported, what="Conflict condition on cluster1's export")
        eventually(
            lambda: kubectl.json(C1, "get", "events", "-n", namespace)["items"],
            what="an Event about the conflict",
        )
        lease = kubectl.json(C1, "get", "lease", "mcs-controller", "-n", SYSTEM_NS)
        assert lease["spec"].get("holderIdentity")

        for ctx in (C1, C2):
            kubectl(ctx, "delete", "serviceexport", "web", "-n", namespace)
        eventually(
            lambda: not kubectl.json(C1, "get", "serviceimports", "-n", namespace)["items"],
            what="ServiceImport deleted",
        )
        # an ApiException for a 403 says "Forbidden"; the message body "is forbidden"
        assert "forbidden" not in ctl.log_tail("rbac", 100_000).lower(), ctl.log_tail("rbac")
    finally:
        code = ctl.stop("rbac")
    assert code == 0, ctl.log_tail("rbac")


def _obj(kind: str, name: str, ns: str, labels: dict[str, str], **body: Any) -> str:
    api = {
        "Service": "v1",
        "EndpointSlice": "discovery.k8s.io/v1",
        "ServiceImport": "multicluster.x-k8s.io/v1beta1",
    }[kind]
    meta = {"name": name, "namespace": ns, "labels": labels}
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, **body})


OURS = {"app.kubernetes.io/managed-by": "mcs-controller"}
OUR_SLICE = OURS | {"endpointslice.kubernetes.io/managed-by": "mcs-controller.dev"}
PORTS = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
ENDPOINTS = {"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.9"]}]}


def test_admission_policy_confines_the_controller(
    kubectl: Kubectl, system_namespace: str, namespace: str
) -> None:
    """Acting as the controller's ServiceAccount (impersonation), whose ClusterRole alone
    would allow every write below: the ValidatingAdmissionPolicy denies writes to foreign
    Services, EndpointSlices and ServiceImports, and allows the controller's own."""
    ns = namespace  # the shipped RBAC is in place (the ``accounts`` fixture)

    def as_sa(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(C1, f"--as={SA_USER}", *args, stdin=stdin, check=False)

    def denied(proc: subprocess.CompletedProcess[str], words: str) -> None:
        assert proc.returncode != 0, f"allowed: {proc.stdout}"
        assert "mcs-controller-writes" in proc.stderr and words in proc.stderr, proc.stderr

    def allowed(proc: subprocess.CompletedProcess[str]) -> None:
        assert proc.returncode == 0, proc.stderr

    apply = ("apply", "--server-side", "--field-manager=mcs-controller", "-f", "-")
    label = ("--type=merge", "-p", '{"metadata":{"labels":{"evil":"yes"}}}')
    foreign_slice = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    kubectl(C1, "apply", "-f", "-", stdin=_obj("Service", "web", ns, {}, spec=PORTS))
    kubectl(
        C1,
        "apply",
        "-f",
        "-",
        stdin=_obj("EndpointSlice", "web-x", ns, foreign_slice, **ENDPOINTS),
    )
    kubectl(
        C1,
        "apply",
        "-f",
        "-",
        stdin=_obj(
            "ServiceImport",
            "web",
            ns,
            {},
            spec={"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]},
        ),
    )
    # RBAC alone allows the patch; the policy (loaded asynchronously) denies it
    can = kubectl(C1, "auth", "can-i", "patch", "services", "-n", ns, f"--as={SA_USER}")
    assert can.stdout.strip() == "yes"
    eventually(
        lambda: (
            "mcs-controller-writes" in as_sa("patch", "service", "web", "-n", ns, *label).stderr
        ),
        what="the admission policy in force",
    )
    # foreign objects: no patch, no take-over, no delete
    denied(as_sa("patch", "service", "web", "-n", ns, *label), "labelled")
    take_over = '{"metadata":{"labels":{"app.kubernetes.io/managed-by":"mcs-controller"}}}'
    denied(
        as_sa("patch", "service", "web", "-n", ns, "--type=merge", "-p", take_over),
        "not its own",
    )
    denied(as_sa("patch", "service", "kubernetes", "-n", "default", *label), "labelled")
    denied(as_sa("delete", "service", "web", "-n", ns), "labelled")
    denied(as_sa("patch", "endpointslice", "web-x", "-n", ns, *label), "labelled")
    denied(as_sa("delete", "endpointslice", "web-x", "-n", ns), "labelled")
    denied(as_sa("patch", "serviceimport", "web", "-n", ns, *label), "labelled")
    # its own kinds of objects, but not as mcs writes them
    denied(as_sa(*apply, stdin=_obj("Service", "web2", ns, OURS, spec=PORTS)), "derived-*")
    node_port = {**PORTS, "type": "NodePort"}
    denied(as_sa(*apply, stdin=_obj("Service", "derived-b", ns, OURS, spec=node_port)), "ClusterIP")
    external = {**PORTS, "externalIPs": ["192.0.2.1"]}
    denied(
        as_sa(*apply, stdin=_obj("Service", "derived-c", ns, OURS, spec=external)),
        "externalIPs",
    )
    denied(as_sa(*apply, stdin=_obj("EndpointSlice", "s1", ns, OURS, **ENDPOINTS)), "managed by")
    to_kubernetes = OUR_SLICE | {"kubernetes.io/service-name": "kubernetes"}
    denied(
        as_sa(*apply, stdin=_obj("EndpointSlice", "s2", "default", to_kubernetes, **ENDPOINTS)),
        "default/kubernetes",
    )
    # its own writes go through
    allowed(as_sa(*apply, stdin=_obj("Service", "derived-a", ns, OURS, spec=PORTS)))
    denied(
        as_sa(
            "patch",
            "service",
            "derived-a",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"externalIPs":["192.0.2.1"]}}',
        ),
        "externalIPs",
    )
    allowed(as_sa(*apply, stdin=_obj("EndpointSlice", "s3", ns, OUR_SLICE, **ENDPOINTS)))
    allowed(
        as_sa(
            *apply,
            stdin=_obj(
                "ServiceImport",
                "mine",
                ns,
                OURS,
                spec={"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]},
            ),
        )
    )
    allowed(as_sa("delete", "endpointslice", "s3", "-n", ns))
    allowed(as_sa("delete", "service", "derived-a", "-n", ns))
    allowed(as_sa("delete", "serviceimport", "mine", "-n", ns))
    # a user is not affected by the policy
    allowed(kubectl(C1, "patch", "service", "web", "-n", ns, *label, check=False))


# --------------------------------------------------------------------------- the examples


@contextlib.contextmanager
def central_controller(accounts: ServiceAccounts, workdir: Path) -> Iterator[Controllers]:
    ctl = Controllers("central", accounts, workdir)
    ctl.start("examples", "--contexts", f"{C1},{C2}", "--resync-period", "5")
    try:
        yield ctl
    finally:
        code = ctl.stop("examples")
        assert code == 0, ctl.log_tail("examples")


def _dns_a(mesh: MeshState, ctx: str, name: str) -> list[str]:
    port = next(m.dns_port for m in mesh.members if m.name == ctx)
    assert port, "the session mesh runs CoreDNS"
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return sorted(r.address for rrset in reply.answer for r in rrset if r.rdtype == dns.rdatatype.A)


def _apply_example(kubectl: Kubectl, ctx: str, *files: str) -> list[str]:
    args = [a for f in files for a in ("-f", str(EXAMPLES / f))]
    kubectl(ctx, "apply", *args)
    return args


def _cleanup(kubectl: Kubectl, applied: dict[str, list[str]]) -> None:
    for ctx, args in applied.items():
        kubectl(ctx, "delete", "--ignore-not-found", *args, check=False)


def _gone(kubectl: Kubectl, name: str) -> bool:
    return all(
        not kubectl(ctx, "get", "serviceimport", name, "-n", "default", check=False).stdout
        for ctx in (C1, C2)
    )


def test_rebel_base_example(
    kubectl: Kubectl, mesh: MeshState, accounts: ServiceAccounts, tmp_path: Path
) -> None:
    applied: dict[str, list[str]] = {}
    with central_controller(accounts, tmp_path):
        try:
            for ctx in (C1, C2):
                applied[ctx] = _apply_example(
                    kubectl,
                    ctx,
                    f"rebel-base/{ctx}.yaml",
                    "rebel-base/export.yaml",
                    "rebel-base/x-wing.yaml",
                )
            for ctx in (C1, C2):

                def ready(ctx: str = ctx) -> list[str]:
                    imp = kubectl.json(ctx, "get", "serviceimport", "rebel-base", "-n", "default")
                    clusters = [c["cluster"] for c in imp.get("status", {}).get("clusters", [])]
                    return imp["spec"].get("ips", []) if clusters == [C1, C2] else []

                ips = eventually(ready, what=f"rebel-base imported in {ctx}")
                eventually(
                    lambda ctx=ctx, ips=ips: (
                        _dns_a(mesh, ctx, REBEL_DNS) == sorted(ip for ip in ips if ":" not in ip)
                    ),
                    what=f"{REBEL_DNS} in {ctx}",
                )
            # both clusters' Deployments run, and each cluster imports all four pods
            pods = {c: wait_running(kubectl, c, "default", 2, app="rebel-base") for c in (C1, C2)}
            for ctx in (C1, C2):

                def behind(ctx: str = ctx) -> dict[str, set[str]]:
                    out: dict[str, set[str]] = {}
                    for s in kubectl.json(
                        ctx,
                        "get",
                        "endpointslices",
                        "-n",
                        "default",
                        "-l",
                        "multicluster.kubernetes.io/service-name=rebel-base",
                    )["items"]:
                        source = s["metadata"]["labels"][
                            "multicluster.kubernetes.io/source-cluster"
                        ]
                        out.setdefault(source, set()).update(
                            a for e in s.get("endpoints") or [] for a in e["addresses"]
                        )
                    return out

                eventually(lambda b=behind: b() == pods, what=f"pods behind rebel-base in {ctx}")
        finally:
            _cleanup(kubectl, applied)
        eventually(lambda: _gone(kubectl, "rebel-base"), what="rebel-base import removed")


def test_conflicts_example(kubectl: Kubectl, accounts: ServiceAccounts, tmp_path: Path) -> None:
    """What examples/conflicts/README.md shows: cluster1 (older) wins both disagreements."""
    applied: dict[str, list[str]] = {}
    with central_controller(accounts, tmp_path):
        try:
            applied[C1] = _apply_example(kubectl, C1, "conflicts/cluster1.yaml")
            time.sleep(1.1)
            applied[C2] = _apply_example(kubectl, C2, "conflicts/cluster2.yaml")
            for ctx in (C1, C2):

                def reason(ctx: str = ctx) -> str | None:
                    exp = kubectl.json(ctx, "get", "serviceexport", "tatooine", "-n", "default")
                    cond = condition(exp, "Conflict")
                    return cond["reason"] if cond and cond["status"] == "True" else None

                got = eventually(reason, what=f"Conflict on {ctx}")
                assert got == "PortConflict,SessionAffinityConflict"
            imp = kubectl.json(C2, "get", "serviceimport", "tatooine", "-n", "default")
            assert [(p["name"], p["port"]) for p in imp["spec"]["ports"]] == [("http", 80)]
            assert imp["spec"]["sessionAffinity"] == "ClientIP"
        finally:
            _cleanup(kubectl, applied)
        eventually(lambda: _gone(kubectl, "tatooine"), what="tatooine import removed")


def test_headless_example(
    kubectl: Kubectl, mesh: MeshState, accounts: ServiceAccounts, tmp_path: Path
) -> None:
    applied: dict[str, list[str]] = {}
    with central_controller(accounts, tmp_path):
        try:
            for ctx in (C1, C2):
                applied[ctx] = _apply_example(
                    kubectl, ctx, "headless/statefulset.yaml", "headless/export.yaml"
                )
            wait_running(kubectl, C2, "default", 2, app="db")
            db0 = kubectl.json(C2, "get", "pod", "db-0", "-n", "default")["status"]["podIPs"]
            want = [ip["ip"] for ip in db0 if ":" not in ip["ip"]]
            name = "db-0.cluster2.db.default.svc.clusterset.local"
            eventually(lambda: _dns_a(mesh, C1, name) == want, what=name)
            imp = kubectl.json(C1, "get", "serviceimport", "db", "-n", "default")
            assert imp["spec"]["type"] == "Headless"
        finally:
            _cleanup(kubectl, applied)
        eventually(lambda: _gone(kubectl, "db"), what="db import removed")
