"""``kubectl mcs uninstall``'s plan (pure): exactly the objects carrying our managed-by
label, global-service slices first, never a ServiceExport or a user's object; the CRDs
only when asked and no user object would go with them (unless forced)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mcs.commands.kubectl_plugin import parse_args
from mcs.commands.uninstall import CRDS, Listed, plan_context
from mcs.core import api

# The ownership label stays "mcs-controller" whatever the EndpointSlice manager's name is.
OURS = {"app.kubernetes.io/managed-by": "mcs-controller"}
SLICE_OURS = {**OURS, api.ENDPOINTSLICE_MANAGED_BY: api.CONTROLLER_NAME}


def obj(name: str, labels: dict[str, str] | None = None, ns: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}}


def global_slice(name: str) -> dict[str, Any]:
    return obj(name, {**SLICE_OURS, "kubernetes.io/service-name": "web"})


def import_slice(name: str) -> dict[str, Any]:
    labels = {
        **SLICE_OURS,
        "kubernetes.io/service-name": "derived-abc",
        "multicluster.kubernetes.io/service-name": "web",
    }
    return obj(name, labels)


def test_order_and_only_ours() -> None:
    listed = Listed(
        imports=[obj("web", OURS), obj("theirs", {"app.kubernetes.io/managed-by": "cilium"})],
        services=[obj("derived-abc", OURS), obj("web", {"app.kubernetes.io/managed-by": "helm"})],
        slices=[import_slice("derived-abc-1"), global_slice("web-remote"), obj("web-x")],
        exports=[obj("web")],
        crds=list(CRDS),
    )
    plan = plan_context(listed, delete_crds=False, force=False)
    assert [(d.kind.plural, d.name, d.what) for d in plan.deletions] == [
        ("endpointslices", "web-remote", "remote backends of a global Service"),
        ("endpointslices", "derived-abc-1", "endpoints of an import"),
        ("serviceimports", "web", "import"),
        ("services", "derived-abc", "derived Service"),
    ]
    assert plan.kept_exports == 1 and plan.kept_imports == 1 and plan.refused is None
    assert [d.path() for d in plan.deletions][2] == (
        "/apis/multicluster.x-k8s.io/v1beta1/namespaces/team/serviceimports/web"
    )


def test_crds_refused_while_exports_exist_unless_forced() -> None:
    listed = Listed(imports=[obj("web", OURS)], exports=[obj("web")], crds=list(CRDS))
    refused = plan_context(listed, delete_crds=True, force=False)
    assert refused.refused and "1 ServiceExport(s) exist" in refused.refused
    assert all(d.kind.plural != "customresourcedefinitions" for d in refused.deletions)
    assert refused.kept_exports == 1
    forced = plan_context(listed, delete_crds=True, force=True)
    crds = [d for d in forced.deletions if d.kind.plural == "customresourcedefinitions"]
    assert [d.name for d in crds] == sorted(CRDS)
    assert (
        crds[0].path() == f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crds[0].name}"
    )
    assert forced.deletions[0].kind.plural == "serviceimports"  # the objects before their CRD


def test_crds_refused_while_imports_of_another_implementation_exist() -> None:
    listed = Listed(
        imports=[obj("x", {"app.kubernetes.io/managed-by": "submariner"})], crds=list(CRDS)
    )
    plan = plan_context(listed, delete_crds=True, force=False)
    assert plan.refused and "not written by mcs" in plan.refused
    clean = plan_context(
        Listed(imports=[obj("web", OURS)], crds=list(CRDS)), delete_crds=True, force=False
    )
    assert clean.refused is None and len(clean.deletions) == 3


def test_nothing_left_plans_nothing() -> None:
    assert plan_context(Listed(), delete_crds=True, force=False).deletions == ()


labels = st.sampled_from(
    [{}, OURS, SLICE_OURS, {"app.kubernetes.io/managed-by": "helm"}, {"mcs": "yes"}]
)
objs = st.lists(st.tuples(st.text("abc", min_size=1, max_size=3), labels), max_size=6)


@given(objs, objs, objs, objs)
def test_plans_exactly_the_objects_with_our_label(
    imports: list[Any], services: list[Any], slices: list[Any], exports: list[Any]
) -> None:
    listed = Listed(
        imports=[obj(n, lb) for n, lb in imports],
        services=[obj(n, lb) for n, lb in services],
        slices=[obj(n, {**lb, "kubernetes.io/service-name": "s"}) for n, lb in slices],
        exports=[obj(n, lb) for n, lb in exports],
    )
    plan = plan_context(listed, delete_crds=False, force=False)
    ours = lambda lb: lb.get("app.kubernetes.io/managed-by") == "mcs-controller"  # noqa: E731
    want = sorted(
        [("serviceimports", n) for n, lb in imports if ours(lb)]
        + [("services", n) for n, lb in services if ours(lb)]
        + [("endpointslices", n) for n, lb in slices if ours(lb)]
    )
    assert sorted((d.kind.plural, d.name) for d in plan.deletions) == want
    assert plan.kept_exports == len(exports)


def test_kubectl_flags_reach_uninstall() -> None:
    args = parse_args(["uninstall", "--context", "c1", "--dry-run", "--kubeconfig", "/k"])
    assert (args.command, args.context, args.dry_run, args.kubeconfig) == (
        "uninstall",
        "c1",
        True,
        "/k",
    )
    assert (args.delete_crds, args.force, args.namespace, args.contexts) == (False, False, None, "")
    args = parse_args(["-n", "team", "uninstall", "--contexts", "a,b", "--delete-crds"])
    assert (args.contexts, args.namespace, args.delete_crds) == ("a,b", "team", True)
