"""Unit tests of ``kubectl mcs diagnose``: each check's verdict on crafted objects, the
exit code and the output formats (the integration test runs them against real API
servers: tests/integration/test_diagnose.py)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.commands.kubectl_plugin import parse_args
from mcs.core.durations import arg as duration
from mcs.core.namespaces import NamespacePolicy
from mcs.status.diagnose import admission, controller, coredns, crds, credentials, members, reach
from mcs.status.diagnose import namespaces as nspolicy
from mcs.status.diagnose.findings import Finding, exit_code, ok, problem, render, unknown, warning

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- findings


def test_exit_code_problems_win_then_unchecked() -> None:
    good = ok("crd", "x", "fine")
    assert exit_code([good]) == 0
    assert exit_code([]) == 0
    assert exit_code([good, unknown("coredns", "y", "?")]) == 2
    assert exit_code([good, unknown("coredns", "y", "?"), problem("m", "z", "bad", "fix")]) == 1
    assert exit_code([good, warning("credentials", "z", "soon", "renew")]) == 1


def test_text_is_one_line_per_finding_with_its_fix() -> None:
    found = [ok("crd", "a", "fine"), problem("member", "member/c2", "cannot reach", "start it")]
    text = render(found, "text")
    lines = text.splitlines()
    assert lines[0] == "ok       crd a: fine"
    assert lines[1] == "PROBLEM  member member/c2: cannot reach -- fix: start it"
    assert lines[2].startswith("2 checks: 1 ok, 1 problems")
    assert "crd a" not in render(found, "text", only_problems=True)


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_structured_output_round_trips(output: str) -> None:
    found = [ok("crd", "a", "fine"), problem("member", "member/c2", "down", "start it")]
    text = render(found, output)
    data = json.loads(text) if output == "json" else yaml.safe_load(text)
    assert data["exitCode"] == 1
    assert [Finding(**f) for f in data["findings"]] == found


def test_plugin_parses_diagnose_with_kubectl_flags() -> None:
    args = parse_args(["diagnose", "-o", "json", "--request-timeout", "1m", "--skip", "coredns"])
    assert (args.command, args.output, args.request_timeout, args.skip) == (
        "diagnose",
        "json",
        60.0,
        ["coredns"],
    )
    assert parse_args(["--context", "c1", "diagnose"]).context == "c1"


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10.0), ("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5)]
)
def test_duration(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "s", "-1", "1m 2s", "inf", "nan", "3d"])
def test_duration_refuses(text: str) -> None:
    with pytest.raises(Exception, match="duration"):
        duration(text)


# --------------------------------------------------------------------------- crds


def crd(versions: dict[str, tuple[bool, bool]], established: str = "True") -> dict[str, Any]:
    return {
        "spec": {
            "versions": [{"name": n, "served": s, "storage": t} for n, (s, t) in versions.items()]
        },
        "status": {"conditions": [{"type": "Established", "status": established}]},
    }


def test_crd_verdicts() -> None:
    name = crds.CRDS[1]
    good = {"v1alpha1": (True, False), "v1beta1": (True, True)}
    assert crds.decide(name, crd(good)).status == "ok"
    assert "not installed" in crds.decide(name, None).message
    assert "not established" in crds.decide(name, crd(good, "False")).message
    no_alpha = crds.decide(name, crd({"v1alpha1": (False, False), "v1beta1": (True, True)}))
    assert no_alpha.status == "problem" and "v1alpha1" in no_alpha.message
    stores_alpha = crds.decide(name, crd({"v1alpha1": (True, True), "v1beta1": (True, False)}))
    assert stores_alpha.status == "problem" and "stores v1alpha1" in stores_alpha.message


# --------------------------------------------------------------------------- admission


@pytest.mark.parametrize(
    ("version", "status"),
    [
        ({"major": "1", "minor": "29", "gitVersion": "v1.29.4"}, "problem"),
        ({"major": "1", "minor": "30+", "gitVersion": "v1.30.1-eks"}, "ok"),
        ({"major": "1", "minor": "34"}, "ok"),
        ({"gitVersion": "v1.28.0"}, "problem"),
        ({}, "unknown"),
    ],
)
def test_kubernetes_version(version: dict[str, str], status: str) -> None:
    assert admission.decide_version(version).status == status


def test_policy_must_be_bound_with_deny() -> None:
    policy = {"metadata": {"name": admission.POLICY}}

    def binding(actions: list[str]) -> dict[str, Any]:
        return {
            "metadata": {"name": "b"},
            "spec": {"policyName": admission.POLICY, "validationActions": actions},
        }

    assert admission.decide_policy(None, []).message == "not installed"
    assert "not bound" in admission.decide_policy(policy, []).message
    assert "Deny" in admission.decide_policy(policy, [binding(["Audit"])]).message
    assert admission.decide_policy(policy, [binding(["Deny"])]).status == "ok"


# --------------------------------------------------------------------------- controller


def deployment(args: list[str], *, available: int = 2, env: Any = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "mcs-controller", "namespace": "mcs-ops"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"args": args, "env": env or []}]}},
        },
        "status": {"availableReplicas": available},
    }


def secret_ref(key: str, optional: bool = False) -> dict[str, Any]:
    ref = {"name": controller.SECRET, "key": key, "optional": optional}
    return {"name": key.upper(), "valueFrom": {"secretKeyRef": ref}}


def test_settings_from_new_and_deprecated_flag_names() -> None:
    old = controller.settings(
        deployment(
            [
                "run",
                "--leader-elect",
                "--leader-elect-namespace=$(POD_NAMESPACE)",
                "--leader-elect-lease-name",
                "old",
                "--exclude-namespaces=a, b",
            ]
        )
    )
    assert (old.leader_elect, old.lease_name, old.lease_namespace) == (True, "old", "mcs-ops")
    assert old.exclude_namespaces == ("a", "b") and not old.namespace_opt_in
    new = controller.settings(
        deployment(
            [
                "--leader-elect-resource-name=new",
                "--leader-elect-resource-namespace=x",
                "--namespace-opt-in",
            ],
            env=[secret_ref("mode"), secret_ref("member-cidrs", optional=True)],
        )
    )
    assert (new.leader_elect, new.lease_name, new.lease_namespace) == (False, "new", "x")
    assert new.namespace_opt_in and new.secret_keys == ("mode",)


def test_deployment_verdicts() -> None:
    assert controller.decide_deployment("ns", None).status == "problem"
    assert controller.decide_deployment("ns", deployment([])).status == "ok"
    half = controller.decide_deployment("ns", deployment([], available=1))
    assert half.message == "1 of 2 replicas available" and "logs" in half.fix
    assert "0 of 2" in controller.decide_deployment("ns", deployment([], available=0)).message


def test_secret_must_hold_every_key_the_deployment_reads() -> None:
    data = {"data": {"kubeconfig": "", "local-context": ""}}
    missing = controller.decide_secret_keys("ns", ("local-context", "mode"), data)
    assert missing.status == "problem" and "mode" in missing.message and "mode" in missing.fix
    assert controller.decide_secret_keys("ns", ("local-context",), data).status == "ok"
    assert "not found" in controller.decide_secret_keys("ns", (), None).message


def lease(holder: str | None, renewed: datetime) -> dict[str, Any]:
    return {
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": renewed.isoformat().replace("+00:00", "Z"),
        }
    }


def test_lease_verdicts() -> None:
    s = controller.Settings(leader_elect=True, lease_namespace="mcs-system")
    assert (
        controller.decide_lease(s, lease("pod-a", NOW - timedelta(seconds=5)), NOW).status == "ok"
    )
    stale = controller.decide_lease(s, lease("pod-a", NOW - timedelta(minutes=5)), NOW)
    assert stale.status == "problem" and "300s ago" in stale.message
    assert "no one" in controller.decide_lease(s, lease(None, NOW), NOW).message
    assert "not found" in controller.decide_lease(s, None, NOW).message


# --------------------------------------------------------------------------- members


def kubeconfig(*contexts: tuple[str, str, dict[str, Any]]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": n, "cluster": {"server": s}} for n, s, _ in contexts],
            "users": [{"name": n, "user": u} for n, _, u in contexts],
            "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n, _, _ in contexts],
        }
    )


def secret(**values: str) -> dict[str, Any]:
    return {
        "data": {
            k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in values.items()
        }
    }


KC = kubeconfig(
    ("c1", "https://kubernetes.default.svc", {"tokenFile": "/var/run/secrets/x/token"}),
    ("c2", "https://c2.example:6443", {"token": "t"}),
)


def test_members_of_the_secret() -> None:
    m = members.parse(secret(kubeconfig=KC, local_context="c1"))
    assert (m.mode, m.mode_given, m.local_context) == ("per-cluster", False, "c1")
    assert [(x.context, x.in_cluster) for x in m.members] == [("c1", True), ("c2", False)]
    assert members.parse(secret(kubeconfig=KC, local_context="")).mode == "central"
    given = members.parse(secret(kubeconfig=KC, local_context="c1", mode="central"))
    assert (given.mode, given.mode_given) == ("central", True)
    path = m.write()
    try:
        assert path.read_text() == KC and path.stat().st_mode & 0o777 == 0o600
    finally:
        path.unlink()
        path.parent.rmdir()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "has no key 'kubeconfig'"),
        ({"kubeconfig": "[1"}, "not YAML"),
        ({"kubeconfig": KC, "mode": "both"}, "not central or per-cluster"),
        ({"kubeconfig": KC, "mode": "per-cluster", "local_context": "c9"}, "not a context"),
        ({"kubeconfig": "kind: Config\n"}, "no contexts"),
    ],
)
def test_secrets_that_cannot_work(values: dict[str, str], message: str) -> None:
    with pytest.raises(members.SecretError, match=message):
        members.parse(secret(**values))


# --------------------------------------------------------------------------- credentials


def jwt(claims: dict[str, Any]) -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


@given(st.integers(min_value=0, max_value=2**33))
def test_jwt_expiry_is_its_exp(exp: int) -> None:
    assert credentials.jwt_expiry(jwt({"exp": exp})) == datetime.fromtimestamp(exp, UTC)


@pytest.mark.parametrize("token", ["static-token", jwt({"sub": "x"}), "a.!!!.c"])
def test_tokens_without_expiry(token: str) -> None:
    assert credentials.jwt_expiry(token) is None


def test_expiry_verdicts() -> None:
    assert credentials.decide("c2", "token", NOW - timedelta(seconds=1), NOW).status == "problem"
    soon = credentials.decide("c2", "token", NOW + timedelta(days=2), NOW)
    assert soon.status == "warning" and "make-remote-kubeconfig.sh c2" in soon.fix
    assert credentials.decide("c2", "token", NOW + timedelta(days=8), NOW).status == "ok"
    assert credentials.decide("c2", "token", None, NOW).status == "ok"


def certificate(not_after: datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reader")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_after - timedelta(days=30))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_member_credentials(tmp_path: Path) -> None:
    expired = jwt({"exp": int((NOW - timedelta(hours=1)).timestamp())})
    pem = certificate(NOW + timedelta(days=3))
    (tmp_path / "token").write_text(expired)
    user = {
        "tokenFile": "token",
        "client-certificate-data": base64.b64encode(pem).decode(),
    }
    found = credentials.check(members.Member("c2", "https://c2:6443", user), NOW, tmp_path)
    assert [(f.status, f.message.split(" ")[0]) for f in found] == [
        ("problem", "token"),
        ("warning", "client"),
    ]
    pod = members.Member("c1", "https://kubernetes.default.svc", {"tokenFile": "/nope/token"})
    assert [f.status for f in credentials.check(pod, NOW)] == ["ok"]
    lost = members.Member("c3", "https://c3:6443", {"tokenFile": "/nope/token"})
    assert [f.status for f in credentials.check(lost, NOW)] == ["unknown"]


# --------------------------------------------------------------------------- coredns

KUBEADM = """\
.:53 {
    errors
    health
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
}
"""
MULTICLUSTER = """\
.:53 {
    kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {
       pods insecure
       # multicluster example.org
       multicluster clusterset.local
    }
}
"""


def test_corefile_verdicts() -> None:
    w = coredns.Where()
    assert coredns.decide_corefile(w, MULTICLUSTER).status == "ok"
    plain = coredns.decide_corefile(w, KUBEADM)
    assert plain.status == "problem" and "multicluster clusterset.local" in plain.fix
    commented = MULTICLUSTER.replace("       multicluster clusterset.local\n", "")
    assert coredns.decide_corefile(w, commented).status == "problem"
    not_zone = MULTICLUSTER.replace("cluster.local clusterset.local", "cluster.local")
    assert "not authoritative" in coredns.decide_corefile(w, not_zone).message
    assert coredns.decide_corefile(w, "").status == "problem"
    assert coredns.decide_corefile(w, None).status == "unknown"


def test_coredns_rbac_verdicts() -> None:
    w = coredns.Where(service_account="dns")
    review = coredns.review(w, "watch")
    assert review["spec"]["user"] == "system:serviceaccount:kube-system:dns"
    assert review["spec"]["resourceAttributes"]["resource"] == "serviceimports"
    assert coredns.decide_rbac(w, {"list": True, "watch": True}).status == "ok"
    denied = coredns.decide_rbac(w, {"list": True, "watch": False})
    assert denied.status == "problem" and "may not watch" in denied.message
    assert "multicluster.x-k8s.io" in denied.fix
    sa = coredns.service_account({"spec": {"template": {"spec": {"serviceAccountName": "x"}}}}, "d")
    assert (sa, coredns.service_account(None, "d")) == ("x", "d")


# --------------------------------------------------------------------------- namespaces


def export(ns: str, name: str = "svc") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}}


def namespace(name: str, mark: str | None = None) -> dict[str, Any]:
    annotations = {"clustermesh.cilium.io/global": mark} if mark is not None else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_namespace_surprises() -> None:
    default = nspolicy.policy(controller.Settings(exclude_namespaces=("legacy",)), "mcs-system")
    nss = {n: namespace(n) for n in ("app", "legacy", "mcs-system")} | {
        "off": namespace("off", "false")
    }
    exports = [export("app"), export("legacy"), export("mcs-system"), export("off")]
    found = nspolicy.decide(default, "c1", exports, nss)
    assert [(f.status, f.message.split(" ")[3]) for f in found] == [
        ("problem", "legacy"),
        ("problem", "mcs-system"),
        ("problem", "off"),
    ]
    assert "annotate namespace off" in found[2].fix and "NamespaceNotGlobal" in found[2].message
    opt_in = NamespacePolicy.build((), "mcs-system", opt_in=True)
    assert nspolicy.decide(opt_in, "c1", [export("app")], nss)[0].status == "problem"
    marked = {"app": namespace("app", "true")}
    assert nspolicy.decide(opt_in, "c1", [export("app")], marked)[0].status == "ok"


# --------------------------------------------------------------------------- members, reached


def test_member_errors_and_their_fixes() -> None:
    m = members.Member("c2", "https://c2:6443", {})
    assert "make-remote-kubeconfig.sh c2" in reach.decide_error(m, ApiException(401)).fix
    assert "manifests/remote" in reach.decide_error(m, ApiException(403)).fix
    assert "crds" in reach.decide_error(m, ApiException(404)).fix
    down = reach.decide_error(m, ConnectionRefusedError("refused"))
    assert "cannot reach https://c2:6443" in down.message and "reachable" in down.fix


async def test_unreachable_member_is_a_problem(tmp_path: Path) -> None:
    """Through the real client: a member whose API server does not listen."""
    cfg = members.parse(
        secret(
            kubeconfig=kubeconfig(
                ("c1", "https://kubernetes.default.svc", {"token": "t"}),
                ("down", "https://127.0.0.1:9", {"token": "t"}),
                ("exec", "https://127.0.0.1:9", {"exec": {"command": "/bin/false"}}),
            ),
            local_context="c1",
        )
    )
    path = cfg.write(str(tmp_path))
    own = ApiClient()
    try:
        down = await reach.reach(cfg, cfg.members[1], path, own, 5)
        await reach.close([down])
        assert down.finding.status == "problem" and "cannot reach" in down.finding.message
        refused = await reach.reach(cfg, cfg.members[2], path, own, 5)
        assert refused.finding.status == "problem" and "refuses" in refused.finding.message
        assert refused.api is None
    finally:
        await own.close()


@given(st.text())
def test_any_corefile_gets_a_verdict(text: str) -> None:
    assert coredns.decide_corefile(coredns.Where(), text).status in ("ok", "problem")


_line = st.text(max_size=40)


@given(
    st.lists(
        st.builds(
            Finding,
            check=_line,
            subject=_line,
            status=st.sampled_from(["ok", "warning", "problem", "unknown"]),
            message=_line,
            fix=_line,
        ),
        max_size=8,
    )
)
def test_text_has_one_line_per_finding(found: list[Finding]) -> None:
    assert len(render(found, "text").splitlines()) == len(found) + 1
    shown = render(found, "text", only_problems=True).splitlines()
    assert len(shown) == sum(f.status != "ok" for f in found) + 1
