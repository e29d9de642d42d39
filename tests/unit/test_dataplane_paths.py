"""The dataplane's Unix sockets fit in 107 bytes whatever the mesh directory's depth (CI's
pytest tmp paths are deep: a kubelet root under them failed with "bind: invalid argument")."""

from __future__ import annotations

from pathlib import Path

from mcs_mesh.dataplane import Node, apiserver_socket, egress_socket, kubelet_root
from mcs_mesh.processes import mesh_id, run_dir

SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with its NUL


def test_every_socket_path_is_short_under_a_deep_mesh_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / "pytest-of-root" / "pytest-146" / "test_dataplane_up_0" / "m"
    node = Node(mesh=mesh_id(deep), member="cluster9", m=9, k=9)
    root = kubelet_root(deep, node)
    sockets = [
        root / "pod-resources" / "3534367592",  # kubelet's podresources socket
        root / "plugins_registry" / "csi.example.com-reg.sock",
        root / "device-plugins" / "kubelet.sock",
        run_dir(deep) / node.short / "containerd.sock",
        apiserver_socket(deep, "cluster9"),
        egress_socket(deep),
    ]
    for sock in sockets:
        assert len(str(sock).encode()) <= SUN_PATH_MAX, sock
        assert not str(sock).startswith(str(deep)), f"{sock} lies under the mesh directory"
