"""The pure parts of the workload mesh (mcs_mesh/workloads.py): address plans and the
components' command lines."""

from __future__ import annotations

import ipaddress
from itertools import combinations
from pathlib import Path

from mcs_mesh.binaries import Binaries
from mcs_mesh.certs import Pki
from mcs_mesh.workloads import COMPONENTS, commands, node_cidrs, pod_cidrs


def _service_cidrs(i: int) -> list[str]:  # as mcs_mesh/mesh.py assigns them
    return [f"10.{100 + i}.0.0/16", f"fd00:10:{100 + i}::/108"]


def test_pod_cidrs_are_dual_stack_distinct_and_apart_from_services() -> None:
    nets = {i: [ipaddress.ip_network(c) for c in pod_cidrs(i)] for i in range(1, 10)}
    for i, (v4, v6) in nets.items():
        assert (v4.version, v6.version) == (4, 6)
        for svc in map(ipaddress.ip_network, _service_cidrs(i)):
            assert not any(svc.overlaps(p) for p in (v4, v6) if p.version == svc.version)
    for a, b in combinations(nets, 2):
        for x, y in zip(nets[a], nets[b], strict=True):
            assert not x.overlaps(y), (a, b)


def test_node_cidrs_are_disjoint_slices_of_the_member_pod_cidrs() -> None:
    for i in (1, 9):
        member = [ipaddress.ip_network(c) for c in pod_cidrs(i)]
        nodes = [[ipaddress.ip_network(c) for c in node_cidrs(i, n)] for n in range(1, 251)]
        for v4, v6 in nodes:
            assert v4.subnet_of(member[0]) and v6.subnet_of(member[1])  # type: ignore[arg-type]
        assert len({str(n[0]) for n in nodes}) == len({str(n[1]) for n in nodes}) == 250


def test_every_component_names_the_mesh_dir_and_serves_on_loopback(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    stages = tmp_path / "kwok" / "stages"
    stages.mkdir(parents=True)
    for name in ("node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete"):
        (stages / f"{name}.yaml").write_text(f"kind: Stage\nmetadata: {{name: {name}}}\n")
    (stages / "pod-delete.yaml").write_text("kind: Stage\n")
    mesh.mkdir()
    bins = Binaries(
        Path("/b/kube-apiserver"),
        Path("/b/etcd"),
        kube_controller_manager=Path("/b/kube-controller-manager"),
        kube_scheduler=Path("/b/kube-scheduler"),
        kwok=tmp_path / "kwok" / "kwok",
    )
    kubeconfigs = {c: mesh / "kubeconfigs" / f"cluster1-{c}.kubeconfig" for c in COMPONENTS}
    ports = {c: 40000 + n for n, c in enumerate(COMPONENTS)}
    cmds = commands(bins, mesh, Pki(mesh / "pki"), "cluster1", kubeconfigs, ports)
    assert set(cmds) == set(COMPONENTS)
    for name, argv in cmds.items():
        assert Path(argv[0]).name == name
        assert any(str(mesh) in a for a in argv[1:]), name  # how `mesh down` finds it
        assert f"{ports[name]}" in " ".join(argv)
        assert not any("0.0.0.0" in a for a in argv)
    kcm = cmds["kube-controller-manager"]
    assert "--use-service-account-credentials=true" in kcm
    controllers = next(a for a in kcm if a.startswith("--controllers=")).split("=", 1)[1]
    assert "endpointslice-controller" in controllers.split(",")
    assert not any("cloud" in c or "node-lifecycle" in c for c in controllers.split(","))
    assert "kind: Stage" in (mesh / "kwok-cluster1.yaml").read_text()
