"""``mcs status`` as a user runs it, against the session mesh: a conflict made with
kubectl and reported by ``mcs status -o json`` (with the controller running in
both modes), and a member that cannot be reached."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from mcs_mesh.state import MeshState
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import condition_status, export, get_import, service

C1, C2 = "cluster1", "cluster2"


def _status(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcs", "status", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _status_json(kubeconfig: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = _status(kubeconfig, "-o", "json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, data


def test_status_reports_a_conflict_with_reasons_and_winner(
    controllers: Controllers,
    mesh: MeshState,
    kubectl: Kubectl,
    contexts: list[str],
    namespace: str,
) -> None:
    kubectl(C1, "apply", "-f", "-", stdin=service(namespace))
    kubectl(C1, "apply", "-f", "-", stdin=export(namespace))
    eventually(lambda: get_import(kubectl, C1, namespace), what="import in cluster1")
    time.sleep(1.1)  # creationTimestamps have one-second resolution
    other_ports = [{"name": "tcp", "port": 43, "protocol": "TCP"}]
    kubectl(C2, "apply", "-f", "-", stdin=service(namespace, ports=other_ports))
    kubectl(C2, "apply", "-f", "-", stdin=export(namespace))

    def conflicted(ctx: str) -> bool:
        return condition_status(kubectl, ctx, namespace, "Conflict") == "True"

    for ctx in (C1, C2):
        eventually(partial(conflicted, ctx), what=f"Conflict on {ctx}")

    urls = [f"http://127.0.0.1:{health}" for _, health in controllers.ports.values()]
    flags = ["-n", namespace, *(f"--controller={u}" for u in urls)]

    def settled() -> tuple[int, dict[str, Any]] | None:
        code, data = _status_json(mesh.kubeconfig, *flags)
        [svc] = data["services"]
        done = all(e["in_sync"] for e in svc["exports"]) and all(
            i["state"] == "present" and i["clusters"] == [C1, C2] for i in svc["imports"]
        )
        return (code, data) if done else None

    code, data = eventually(settled, what="status in sync with the controller")
    assert code == 1  # --fail-on any (the default) fails on a conflict

    assert [m["context"] for m in data["members"]] == contexts
    for m in data["members"]:
        assert m["reachable"] and m["error"] is None, m
        assert m["cluster_id"] == m["context"]  # from the ClusterProperty the mesh made
        assert str(m["server_version"]).startswith("v")
        assert m["server"].startswith("https://127.0.0.1:")
    assert [(m["exports"], m["imports"]) for m in data["members"]] == [(1, 1), (1, 1), (0, 1)]
    assert [(c["url"], c["ready"], c["reason"]) for c in data["controllers"]] == [
        (u, True, "ok") for u in urls
    ]

    [svc] = data["services"]
    assert (svc["namespace"], svc["name"], svc["state"]) == (namespace, "hello", "conflict")
    assert svc["winner"] == C1 and svc["unknown"] == []
    assert [(e["cluster"], e["winner"], e["state"]) for e in svc["exports"]] == [
        (C1, True, "conflict"),
        (C2, False, "conflict"),
    ]
    assert svc["exports"][0]["created"] < svc["exports"][1]["created"]
    for e in svc["exports"]:
        assert e["reason"] == "PortConflict"
        assert {t: (c["status"], c["reason"]) for t, c in e["conditions"].items()} == {
            "Valid": ("True", "Valid"),
            "Ready": ("True", "Exported"),
            "Conflict": ("True", "PortConflict"),
        }
    conflict = svc["conflict"]
    assert (conflict["reasons"], conflict["fields"]) == (["PortConflict"], ["ports"])
    assert (conflict["winner"], conflict["clusters"]) == (C1, [C2])
    written = kubectl.json(C2, "get", "serviceexport", "hello", "-n", namespace)
    [cond] = [c for c in written["status"]["conditions"] if c["type"] == "Conflict"]
    assert conflict["message"] == cond["message"]
    assert f'using values from the oldest export, in cluster "{C1}"' in conflict["message"]

    assert [i["context"] for i in svc["imports"]] == contexts
    for imp in svc["imports"]:
        assert imp["type"] == "ClusterSetIP" and imp["ips"], imp
        # The older port keeps the name "tcp"; cluster2's 43/TCP is dropped.
        assert [(p["name"], p["protocol"], p["port"]) for p in imp["ports"]] == [
            ("tcp", "TCP", 42),
            ("udp", "UDP", 42),
        ]
    assert data["summary"] == {
        "members": len(contexts),
        "unreachable": 0,
        "member_errors": 0,
        "services": 1,
        "conflicts": 1,
        "invalid": 0,
        "missing_imports": 0,
        "pending": 0,
        "controllers_not_ready": 0,
        "unreachable_by_controller": 0,
    }

    # The exit code follows --fail-on; YAML carries the same structure.
    assert _status(mesh.kubeconfig, *flags, "--fail-on", "never").returncode == 0
    assert _status(mesh.kubeconfig, *flags, "--fail-on", "unreachable").returncode == 0
    assert _status(mesh.kubeconfig, *flags, "--fail-on", "conflict").returncode == 1
    as_yaml = _status(mesh.kubeconfig, *flags, "-o", "yaml")
    assert yaml.safe_load(as_yaml.stdout)["services"] == data["services"]

    # Text for a pipe: no colour, the conflict, its winner and its message.
    text = _status(mesh.kubeconfig, *flags)
    assert text.returncode == 1 and "\x1b[" not in text.stdout
    assert f"{namespace}/hello  conflict  PortConflict  winner {C1}" in text.stdout
    assert conflict["message"] in text.stdout


def test_status_reports_an_unreachable_member(
    mesh: MeshState, contexts: list[str], namespace: str, tmp_path: Path
) -> None:
    config = yaml.safe_load(mesh.kubeconfig.read_text())
    first = config["clusters"][0]["cluster"]
    config["clusters"].append(
        {"name": "gone", "cluster": {**first, "server": "https://127.0.0.1:1"}}
    )
    user = config["users"][0]["name"]
    config["contexts"].append({"name": "gone", "context": {"cluster": "gone", "user": user}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    started = time.monotonic()
    code, data = _status_json(kubeconfig, "-n", namespace, "--timeout", "3")
    assert time.monotonic() - started < 20
    assert code == 1
    by_context = {m["context"]: m for m in data["members"]}
    assert list(by_context) == [*contexts, "gone"]
    gone = by_context.pop("gone")
    assert (gone["reachable"], gone["exports"], gone["imports"]) == (False, None, None)
    assert gone["error"].startswith("version: ") and "127.0.0.1:1" in gone["error"]
    assert all(m["reachable"] for m in by_context.values())
    assert data["summary"]["unreachable"] == 1
    assert data["services"] == []

    assert _status(kubeconfig, "-n", namespace, "--fail-on", "conflict").returncode == 0
    # Only the reachable members: nothing to fail on.
    only = _status(kubeconfig, "-n", namespace, "--contexts", ",".join(contexts))
    assert only.returncode == 0, only.stdout
    bad = _status(kubeconfig, "--contexts", "nope")
    assert bad.returncode == 2 and "context 'nope' is not in the kubeconfig" in bad.stderr
