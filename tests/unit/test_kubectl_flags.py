"""kubectl mcs takes kubectl's flags before or after the subcommand, as kubectl does."""

from __future__ import annotations

import pytest

from mcs.commands.kubectl_plugin import parse_args


@pytest.mark.parametrize(
    "argv",
    [
        ["--context", "c2", "-n", "web", "-o", "json", "export", "svc"],
        ["export", "svc", "--context", "c2", "-n", "web", "-o", "json"],
        ["--context", "c2", "export", "-n", "web", "svc", "-o", "json"],
    ],
)
def test_flags_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.command, args.service) == ("export", "svc")
    assert (args.context, args.namespace, args.output) == ("c2", "web", "json")


def test_status_takes_them_too_and_defaults_fill_in() -> None:
    args = parse_args(["-o", "yaml", "--kubeconfig", "/k", "status", "-n", "ns1"])
    assert (args.output, args.kubeconfig, args.namespace, args.context) == (
        "yaml",
        "/k",
        "ns1",
        None,
    )
    plain = parse_args(["status"])
    assert (plain.output, plain.namespace, plain.context) == ("table", None, None)
    assert plain.kubeconfig
