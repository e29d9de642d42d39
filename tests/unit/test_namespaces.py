"""mcs.core.namespaces: the deny-list, Cilium's namespace filter and the opt-in mode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcs.commands.cli import build_parser
from mcs.commands.run import namespace_policy
from mcs.core import plan
from mcs.core.namespaces import (
    DEFAULT_EXCLUDED,
    GLOBAL_NAMESPACE,
    NamespacePolicy,
    global_mark,
    parse_namespace_list,
)


def ns(name: str = "app", annotation: str | None = None, label: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name}
    if annotation is not None:
        meta["annotations"] = {GLOBAL_NAMESPACE: annotation}
    if label is not None:
        meta["labels"] = {GLOBAL_NAMESPACE: label}
    return {"metadata": meta}


def test_default_deny_list_includes_own_namespace() -> None:
    policy = NamespacePolicy.build(None, "mcs-system")
    assert policy.excluded == {*DEFAULT_EXCLUDED, "mcs-system"}
    for name in (*DEFAULT_EXCLUDED, "mcs-system"):
        ex = policy.exclusion(name, ns(name, annotation="true"), "c1")
        assert ex is not None and ex.reason == "NamespaceExcluded"
        assert "--exclude-namespaces" in ex.message
    assert policy.exclusion("app", ns(), "c1") is None


def test_explicit_list_adds_to_the_default() -> None:
    """--exclude-namespaces adds names: kube-system and the controller's own namespace
    never take part, whatever the flag says (#29)."""
    policy = NamespacePolicy.build(parse_namespace_list(" team-a, ,kube-system "), "mcs-system")
    assert policy.excluded == {"team-a", *DEFAULT_EXCLUDED, "mcs-system"}
    ex = policy.exclusion("mcs-system", ns("mcs-system"), "c1")
    assert ex is not None and ex.reason == "NamespaceExcluded"
    assert NamespacePolicy.build([], "mcs-system").excluded == {*DEFAULT_EXCLUDED, "mcs-system"}


@pytest.mark.parametrize(
    ("annotation", "label", "mark"),
    [
        (None, None, None),
        ("true", None, True),
        ("True", None, True),
        ("false", None, False),
        ("", None, False),
        (None, "true", None),  # only the annotation counts, as in Cilium (#29)
        (None, "false", None),
        ("false", "true", False),
        ("true", "false", True),
    ],
)
def test_global_mark(annotation: str | None, label: str | None, mark: bool | None) -> None:
    assert global_mark(ns(annotation=annotation, label=label)) is mark


def test_cilium_filter_and_opt_in() -> None:
    default, opt_in = NamespacePolicy(), NamespacePolicy(opt_in=True)
    off = default.exclusion("app", ns(annotation="false"), "c2")
    assert off is not None and off.reason == "NamespaceNotGlobal"
    assert 'cluster "c2"' in off.message
    assert "kubectl annotate namespace app clustermesh.cilium.io/global=true" in off.message
    assert default.exclusion("app", ns(), "c1") is None
    assert default.exclusion("app", None, "c1") is None
    unmarked = opt_in.exclusion("app", ns(), "c1")
    assert unmarked is not None and unmarked.reason == "NamespaceNotGlobal"
    assert "--namespace-opt-in" in unmarked.message
    assert opt_in.exclusion("app", ns(label="true"), "c1") is not None  # a label is no mark
    assert opt_in.exclusion("app", ns(annotation="TRUE"), "c1") is None


def test_excluded_export_is_invalid_with_the_reason() -> None:
    export = {
        "metadata": {
            "name": "svc",
            "namespace": "kube-system",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        }
    }
    service = {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    policy = NamespacePolicy.build(None, "mcs-system")
    view = plan.ClusterView(
        "c1",
        True,
        export=export,
        service=service,
        exclusion=policy.exclusion("kube-system", ns("kube-system"), "c1"),
    )
    evaluation = plan.evaluate([view])
    assert evaluation.merged is None and not view.takes_part
    conditions = plan.export_status(evaluation, view, datetime(2026, 1, 2, tzinfo=UTC))
    assert conditions is not None
    valid = next(c for c in conditions if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "NamespaceExcluded")
    assert "--exclude-namespaces" in valid["message"]


@pytest.mark.parametrize(
    ("argv", "env", "excluded", "opt_in"),
    [
        ([], {}, {*DEFAULT_EXCLUDED, "mcs-system"}, False),
        (["--leader-elect-resource-namespace", "ops"], {}, {*DEFAULT_EXCLUDED, "ops"}, False),
        ([], {"POD_NAMESPACE": "mcs"}, {*DEFAULT_EXCLUDED, "mcs"}, False),
        (
            ["--exclude-namespaces", "a,b", "--namespace-opt-in"],
            {},
            {*DEFAULT_EXCLUDED, "mcs-system", "a", "b"},
            True,
        ),
        (["--exclude-namespaces", ""], {}, {*DEFAULT_EXCLUDED, "mcs-system"}, False),
    ],
)
def test_run_flags(
    argv: list[str],
    env: dict[str, str],
    excluded: set[str],
    opt_in: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = build_parser().parse_args(["run", *argv])
    policy = namespace_policy(args)
    assert policy.excluded == excluded and policy.opt_in is opt_in


def test_not_taking_part() -> None:
    policy = NamespacePolicy.build(None, "mcs-system", opt_in=True)
    names = policy.not_taking_part([ns("a", annotation="true"), ns("b"), ns("kube-system")], "c1")
    assert names == {*DEFAULT_EXCLUDED, "mcs-system", "b"}
