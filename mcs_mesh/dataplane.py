"""A real dataplane for the mesh (``mcs mesh up --dataplane``): per member one node whose
pods are real processes with real networking.

Topology (every non-loopback address lives in a network namespace made here; the host's
root namespace gets none, and nothing leaves the machine):

* a **router** namespace ``mcs-<id>-r``: one veth to every node, a route to every node's
  pod CIDRs (IPv4 and IPv6), forwarding on. It also runs the **egress proxy**
  (:mod:`mcs_mesh.egress`, HTTP CONNECT on a Unix socket): every kube-apiserver reaches
  kubelets (``kubectl exec``, ``logs``, ``port-forward``) through it, by its
  ``EgressSelectorConfiguration`` (the "cluster" egress).
* per member ``clusterM`` one **node** namespace ``mcs-<id>-cMn1``: ``eth0``
  (``10.250.<M>1.2`` and ``fd00:250:<M>1::2``, default routes to the router), a CNI bridge
  ``cni0`` for the pods (the node's slice of the member's pod CIDRs,
  :func:`mcs_mesh.workloads.node_cidrs`), and containerd 2, kubelet and kube-proxy
  (iptables mode), each started with ``nsenter --net`` (``ip netns exec`` would hide
  ``/sys/fs/cgroup``). Pod IPs of every member are routed, never masqueraded: a flat
  clusterset network, as Cilium's cluster mesh requires.
* kubelet and kube-proxy reach their API server on the host's loopback through a
  Unix socket: ``socat`` in the root namespace listens on ``<run>/apiserver-<member>.sock``
  and connects to ``127.0.0.1:<port>``; inside the node ``socat`` listens on
  ``127.0.0.1:6443`` and connects to that socket (Unix sockets cross namespaces).
* Images are built here (:mod:`mcs_mesh.images`) and imported into every node's
  containerd, the sandbox (pause) image too; ``mcs mesh load`` imports a user's archive.

Host facts that shaped it are in ``reference/dataplane.md``: cgroup v1 needs
``failCgroupV1: false`` (set only on a v1 host), and the kubelet's ``cgroupRoot`` must
exist in every v1 hierarchy; containerd needs ``restrict_oom_score_adj`` where
``CAP_SYS_RESOURCE`` is missing; runc needs seccomp.

Teardown (:func:`teardown`) works from names alone (namespaces, cgroups and mounts carry
the mesh id, processes name the mesh or run directory), so it also cleans a mesh that
was killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcs_mesh import binaries
from mcs_mesh.certs import Pki, issue_client
from mcs_mesh.processes import is_dataplane_process, mesh_id, mesh_rss_mib, run_dir
from mcs_mesh.state import MeshError
from mcs_mesh.workloads import kubeconfig, node_cidrs, pod_cidrs

NETNS_DIR = Path("/run/netns")
CGROUP = Path("/sys/fs/cgroup")
API_PORT = 6443  # the API server's port as nodes see it (socat inside the node)
KUBELET_PORT = 10250
#: the images every node gets (mcs_mesh.images): sandbox, and the examples'
PAUSE_IMAGE = "localhost/mcs/pause:1"
CLUSTER_DOMAIN = "cluster.local"


class DataplaneError(MeshError):
    """The dataplane cannot start or stop; the message says why."""


def cgroup_v1() -> bool:
    """True on a cgroup v1 host (``/sys/fs/cgroup`` is a tmpfs of hierarchies)."""
    return not (CGROUP / "cgroup.controllers").exists()


@dataclass(frozen=True)
class Node:
    """One node: member index ``m`` (1-based), node number ``k`` (1-based)."""

    mesh: str  # mesh id
    member: str  # clusterM
    m: int
    k: int = 1

    @property
    def name(self) -> str:
        return f"{self.member}-node{self.k}"

    @property
    def short(self) -> str:
        return f"c{self.m}n{self.k}"

    @property
    def netns(self) -> str:
        return f"mcs-{self.mesh}-{self.short}"

    @property
    def cgroup(self) -> str:
        return f"mcs-{self.mesh}-{self.short}"

    @property
    def link(self) -> int:
        return self.m * 10 + self.k

    @property
    def ipv4(self) -> str:
        return f"10.250.{self.link}.2"

    @property
    def ipv6(self) -> str:
        return f"fd00:250:{self.link}::2"

    @property
    def gw4(self) -> str:
        return f"10.250.{self.link}.1"

    @property
    def gw6(self) -> str:
        return f"fd00:250:{self.link}::1"

    @property
    def pod_cidrs(self) -> list[str]:
        return node_cidrs(self.m, self.k)


def router_netns(mid: str) -> str:
    return f"mcs-{mid}-r"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise DataplaneError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def nsenter(netns: str) -> list[str]:
    """The prefix that runs a command in ``netns`` only (keeps the host's cgroup mounts)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--"]


def _sysctl(netns: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    _run(*nsenter(netns), "sh", "-c", f"echo {value} > {path}")


# --------------------------------------------------------------------------- network


def create_network(mid: str, nodes: list[Node]) -> None:
    """The router namespace, each node's namespace, veths, addresses and routes."""
    router = router_netns(mid)
    _run("ip", "netns", "add", router)
    _run("ip", "-n", router, "link", "set", "lo", "up")
    _sysctl(router, "net.ipv4.ip_forward", "1")
    _sysctl(router, "net.ipv6.conf.all.forwarding", "1")
    for n in nodes:
        _run("ip", "netns", "add", n.netns)
        ns = n.netns
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", router, "link", "add", n.short, "type", "veth", "peer", "name", "eth0",
             "netns", ns)  # fmt: skip
        _run("ip", "-n", router, "addr", "add", f"{n.gw4}/24", "dev", n.short)
        _run("ip", "-n", router, "addr", "add", f"{n.gw6}/64", "dev", n.short, "nodad")
        _run("ip", "-n", router, "link", "set", n.short, "up")
        _run("ip", "-n", ns, "addr", "add", f"{n.ipv4}/24", "dev", "eth0")
        _run("ip", "-n", ns, "addr", "add", f"{n.ipv6}/64", "dev", "eth0", "nodad")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "route", "add", "default", "via", n.gw4)
        _run("ip", "-n", ns, "-6", "route", "add", "default", "via", n.gw6)
        v4, v6 = n.pod_cidrs
        _run("ip", "-n", router, "route", "add", v4, "via", n.ipv4)
        _run("ip", "-n", router, "-6", "route", "add", v6, "via", n.ipv6)
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ):
            _sysctl(ns, key, value)


def create_cgroups(node: Node) -> None:
    """The kubelet's ``cgroupRoot``: on v1 in every hierarchy (else "missing paths")."""
    if cgroup_v1():
        for h in sorted(CGROUP.iterdir()):
            if h.is_dir() and not h.is_symlink():
                with contextlib.suppress(OSError):
                    (h / node.cgroup).mkdir(exist_ok=True)
    else:
        root = CGROUP
        wanted = {"cpu", "memory", "pids", "io", "cpuset", "hugetlb"}
        have = set((root / "cgroup.controllers").read_text().split())
        with contextlib.suppress(OSError):
            (root / "cgroup.subtree_control").write_text(
                " ".join(f"+{c}" for c in sorted(wanted & have))
            )
        (root / node.cgroup).mkdir(exist_ok=True)


# --------------------------------------------------------------------------- configuration


def containerd_config(node: Node, directory: Path, bins: binaries.NodeBinaries) -> str:
    base = directory / "nodes" / node.short
    run = run_dir(directory) / node.short
    return f"""\
version = 3
root = "{base / "containerd"}"
state = "{run / "containerd"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "{run / "containerd.sock"}"

[plugins."io.containerd.cri.v1.runtime"]
  # this sandbox lacks CAP_SYS_RESOURCE: no oom_score_adj below containerd's own
  restrict_oom_score_adj = true
  enable_selinux = false
  # pods' network namespaces under the run directory, not in the host's /run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{bins.runc}"
        Root = "{run / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bins.cni_bin}"]
    conf_dir = "{base / "cni"}"
    max_conf_num = 1

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_config(node: Node, directory: Path) -> dict[str, Any]:
    v4, v6 = node.pod_cidrs
    return {
        "cniVersion": "1.0.0",
        "name": f"mcs-{node.mesh}-{node.short}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,  # a flat routed network: pod IPs are seen as they are
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": v4}], [{"subnet": v6}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                    "dataDir": str(run_dir(directory) / node.short / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    node: Node, directory: Path, pki: Pki, dns: str | None, resolv: Path
) -> dict[str, Any]:
    base = directory / "nodes" / node.short
    cfg: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{node.cgroup}",
        "containerRuntimeEndpoint": f"unix://{run_dir(directory) / node.short / 'containerd.sock'}",
        "address": node.ipv4,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki.ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        "podLogsDir": str(base / "pod-logs"),
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "protectKernelDefaults": False,
        "registerNode": True,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "60s",
        "maxPods": 60,
        "tlsCertFile": str(base / "kubelet.crt"),
        "tlsPrivateKeyFile": str(base / "kubelet.key"),
    }
    if dns:
        cfg["clusterDNS"] = [dns]
    if cgroup_v1():
        # Kubernetes 1.35+ refuses cgroup v1 unless told otherwise (KEP-5573)
        cfg["failCgroupV1"] = False
    return cfg


def kube_proxy_config(node: Node, kubeconfig_path: Path) -> dict[str, Any]:
    v4, v6 = pod_cidrs(node.m)
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": f"{v4},{v6}",
        "hostnameOverride": node.name,
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # leave the namespace's conntrack settings alone (not writable everywhere)
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # upstream's defaults, as a user's cluster has them: kube-proxy applies a change
        # at most once a second (most of a failover's time, as curl sees it)
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "1s"},
    }


def egress_config(directory: Path) -> Path:
    """The kube-apiservers' EgressSelectorConfiguration: "cluster" traffic (to kubelets,
    pods, services) through the egress proxy's Unix socket in the router namespace."""
    path = directory / "egress-selector.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.k8s.io/v1beta1",
                "kind": "EgressSelectorConfiguration",
                "egressSelections": [
                    {
                        "name": "cluster",
                        "connection": {
                            "proxyProtocol": "HTTPConnect",
                            "transport": {"uds": {"udsName": str(egress_socket(directory))}},
                        },
                    }
                ],
            }
        )
    )
    return path


def egress_socket(directory: Path) -> Path:
    return run_dir(directory) / "egress.sock"


def apiserver_args(directory: Path, pki: Pki) -> list[str]:
    """What a member's kube-apiserver needs on top of the default mesh's flags."""
    run_dir(directory).mkdir(parents=True, exist_ok=True)
    who = "kube-apiserver-kubelet-client"
    issue_client(pki, who, who, "system:masters")
    return [
        f"--egress-selector-config-file={egress_config(directory)}",
        f"--kubelet-client-certificate={pki.client_cert(who)}",
        f"--kubelet-client-key={pki.client_key(who)}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def apiserver_socket(directory: Path, member: str) -> Path:
    return run_dir(directory) / f"apiserver-{member}.sock"


def kubelet_root(directory: Path, node: Node) -> Path:
    """The kubelet's ``--root-dir``: under the short run directory, because kubelet opens
    Unix sockets in it (``pod-resources/<10 digits>``, ``plugins_registry``,
    ``device-plugins``) and a socket path allows 107 bytes; under the mesh directory a
    deep ``pytest`` tmp path overflowed it ("bind: invalid argument")."""
    return run_dir(directory) / node.short / "kubelet"


def node_kubeconfig(directory: Path, pki: Pki, node: Node, component: str) -> Path:
    """A kubeconfig for ``component`` on ``node`` naming the API server as the node sees
    it (``https://127.0.0.1:6443``, which the serving certificate covers)."""
    who = f"{node.member}-{component}"
    if component == "kubelet":
        issue_client(pki, who, f"system:node:{node.name}", "system:masters")
    elif component == "coredns":
        issue_client(pki, who, f"{node.member}-coredns", "system:masters")
    else:
        issue_client(pki, who, "system:kube-proxy", None)
    path = directory / "nodes" / node.short / f"{component}.kubeconfig"
    path.write_text(
        yaml.safe_dump(kubeconfig(f"https://127.0.0.1:{API_PORT}", pki, who), sort_keys=False)
    )
    path.chmod(0o600)
    return path


def self_signed(node: Node, directory: Path) -> None:
    """The kubelet's serving certificate (the API server does not check it; kubelet would
    otherwise write one into its cert dir)."""
    base = directory / "nodes" / node.short
    _run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "365", "-subj", f"/CN={node.name}",
        "-addext", f"subjectAltName=IP:{node.ipv4},IP:{node.ipv6},DNS:{node.name}",
        "-keyout", str(base / "kubelet.key"), "-out", str(base / "kubelet.crt"),
    )  # fmt: skip


# --------------------------------------------------------------------------- processes


@dataclass
class NodeProcs:
    """The commands of one node, in start order: name -> argv."""

    node: Node
    commands: dict[str, list[str]]


def node_commands(
    node: Node,
    directory: Path,
    pki: Pki,
    bins: binaries.NodeBinaries,
    dns: str | None,
) -> NodeProcs:
    """Write the node's configuration files and return its commands (each one names the
    mesh or run directory, which is how ``down`` recognises them)."""
    base = directory / "nodes" / node.short
    (base / "cni").mkdir(parents=True, exist_ok=True)
    (run_dir(directory) / node.short).mkdir(parents=True, exist_ok=True)
    (base / "containerd.toml").write_text(containerd_config(node, directory, bins))
    (base / "cni" / "10-mcs.conflist").write_text(json.dumps(cni_config(node, directory), indent=1))
    resolv = base / "resolv.conf"
    resolv.write_text(f"search {CLUSTER_DOMAIN}\noptions ndots:5\n")
    self_signed(node, directory)
    kubelet_kc = node_kubeconfig(directory, pki, node, "kubelet")
    proxy_kc = node_kubeconfig(directory, pki, node, "kube-proxy")
    (base / "kubelet.yaml").write_text(
        yaml.safe_dump(kubelet_config(node, directory, pki, dns, resolv), sort_keys=False)
    )
    (base / "kube-proxy.yaml").write_text(
        yaml.safe_dump(kube_proxy_config(node, proxy_kc), sort_keys=False)
    )
    ns = nsenter(node.netns)
    sock = apiserver_socket(directory, node.member)
    return NodeProcs(
        node,
        {
            "apiserver-bridge": [
                *ns, "socat", f"TCP-LISTEN:{API_PORT},bind=127.0.0.1,fork,reuseaddr",
                f"UNIX-CONNECT:{sock}",
            ],
            "containerd": [*ns, str(bins.containerd), "--config", str(base / "containerd.toml")],
            "kubelet": [
                *ns, str(bins.kubelet), f"--config={base / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_kc}", f"--root-dir={kubelet_root(directory, node)}",
                f"--hostname-override={node.name}", f"--node-ip={node.ipv4},{node.ipv6}",
                "--v=1",
            ],
            "kube-proxy": [
                *ns, str(bins.kube_proxy), f"--config={base / 'kube-proxy.yaml'}", "--v=1",
            ],
        },
    )  # fmt: skip


def dns_command(node: Node, directory: Path, pki: Pki, coredns: Path) -> list[str]:
    """The member's CoreDNS (``cluster.local`` and ``clusterset.local``, the multicluster
    plugin) in the node's namespace on ``<node ip>:53``: the ``clusterDNS`` of its pods."""
    from mcs_mesh.dns import corefile

    base = directory / "nodes" / node.short
    kc = node_kubeconfig(directory, pki, node, "coredns")
    conf = corefile(kc, "mesh", 53, 8181).replace("bind 127.0.0.1", f"bind {node.ipv4} {node.ipv6}")
    (base / "Corefile").write_text(conf)
    return [*nsenter(node.netns), str(coredns), "-conf", str(base / "Corefile")]


def host_bridge_command(directory: Path, member: str, port: int) -> list[str]:
    """socat in the root namespace: the member's API server behind a Unix socket."""
    return [
        "socat",
        f"UNIX-LISTEN:{apiserver_socket(directory, member)},fork,unlink-early",
        f"TCP:127.0.0.1:{port}",
    ]


def egress_command(directory: Path, mid: str, python: str) -> list[str]:
    return [
        *nsenter(router_netns(mid)),
        python,
        "-m",
        "mcs_mesh.egress",
        str(egress_socket(directory)),
        str(directory),
    ]


def node_env(bins: binaries.NodeBinaries) -> dict[str, str]:
    """containerd finds ``containerd-shim-runc-v2`` on PATH."""
    path = ":".join(str(d) for d in bins.bin_dirs)
    return {**os.environ, "PATH": f"{path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def wait_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise DataplaneError(f"{proc.args!r} exited with {proc.returncode}; {log}:\n{tail}")
        if time.monotonic() > deadline:
            raise DataplaneError(f"{path} did not appear within {within:.0f}s; see {log}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- teardown


def dataplane_pids(directory: Path) -> list[int]:
    """Every live dataplane process naming the mesh or its run directory (shims name the
    latter through containerd's socket address)."""
    needles = [str(directory.resolve()), str(run_dir(directory))]
    me = os.getpid()
    out = []
    for e in Path("/proc").iterdir():
        if not e.name.isdigit() or int(e.name) == me:
            continue
        try:
            argv = (e / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if is_dataplane_process(argv) and any(n in a for a in argv for n in needles):
            out.append(int(e.name))
    return out


def _kill(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cgroup_dirs(mid: str) -> list[Path]:
    """The mesh's node cgroups and everything under them, deepest first. Cgroups vanish
    while we look (kubelet and containerd remove theirs): os.walk skips those."""
    out: list[Path] = []
    for root in list(CGROUP.glob(f"*/mcs-{mid}-*")) + list(CGROUP.glob(f"mcs-{mid}-*")):
        for here, _, _ in os.walk(root):
            out.append(Path(here))
    return sorted(set(out), key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(mid: str) -> list[int]:
    """Processes in the mesh's node cgroups (containers whose shim is gone)."""
    out: set[int] = set()
    for d in _cgroup_dirs(mid):
        with contextlib.suppress(OSError, ValueError):
            out.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return sorted(out)


def _mounts_under(prefixes: list[str]) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            out.append(point)
    return sorted(set(out), key=len, reverse=True)


def _stop_processes(directory: Path, mid: str) -> None:
    """Node components, bridges, proxy and shims; then whatever is left in the node
    cgroups (containers); and the sockets of the shims."""
    sockets = _shim_sockets(dataplane_pids(directory))
    for _ in range(3):
        pids = dataplane_pids(directory)
        pids += [p for p in _cgroup_pids(mid) if p not in pids]
        if not pids:
            break
        _kill(pids, grace=5)
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.unlink()


def teardown(directory: Path) -> list[str]:
    """Remove everything a dataplane of the mesh in ``directory`` made; returns what was
    left (empty when clean). Safe when nothing is there, and after a SIGKILL."""
    directory = directory.resolve()
    mid = mesh_id(directory)
    run = run_dir(directory)
    # every step runs even when an earlier one failed (a name seen vanishing, say): what
    # is left is returned, and the next down or up tries again
    errors: list[str] = []
    try:
        _stop_processes(directory, mid)
    except OSError as e:
        errors.append(f"stopping processes: {e}")
    # 2. mounts (container rootfs, kubelet volumes, netns of sandboxes), deepest first
    for point in _mounts_under([str(directory), str(run)]):
        _run("umount", "-l", point, check=False)
    # 3. network namespaces (deleting one removes its veths, bridge and addresses)
    for ns in sorted(NETNS_DIR.glob(f"mcs-{mid}-*")) if NETNS_DIR.exists() else []:
        _run("ip", "netns", "delete", ns.name, check=False)
    # 4. cgroups, deepest first (a cgroup directory holds only its control files)
    for d in _cgroup_dirs(mid):
        with contextlib.suppress(OSError):
            d.rmdir()
    # 5. CNI's cache entries of our networks, and the run directory
    for cached in Path("/var/lib/cni/results").glob("*"):
        with contextlib.suppress(OSError):
            if str(run) + "/" in cached.read_text(errors="replace"):
                cached.unlink()
    for d in (
        Path("/var/lib/cni/results"),
        Path("/var/lib/cni"),
        SHIM_SOCKETS,
        SHIM_SOCKETS.parent,
    ):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty: another containerd may use them
    _rm_tree(run)
    return errors + leftovers(directory)


SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 2 hard-codes the shims' socket dir


def _shim_sockets(pids: list[int]) -> list[Path]:
    """The sockets of our runc shims (``/run/containerd/s/<sha256(address/ns/id)>``), which a
    killed shim leaves behind."""
    out = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if Path(argv[0]).name != "containerd-shim-runc-v2":
            continue
        opts = dict(zip(argv[1::2], argv[2::2], strict=False))
        if {"-namespace", "-id", "-address"} <= opts.keys():
            key = os.path.join(opts["-address"], opts["-namespace"], opts["-id"])
            out.append(SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest())
    return out


def _rm_tree(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def leftovers(directory: Path) -> list[str]:
    """What of the dataplane still exists: processes, namespaces, mounts, cgroups, state."""
    directory = directory.resolve()
    mid = mesh_id(directory)
    run = run_dir(directory)
    out = [f"process {p}" for p in dataplane_pids(directory)]
    if NETNS_DIR.exists():
        out += [f"netns {ns.name}" for ns in NETNS_DIR.glob(f"mcs-{mid}-*")]
    out += [f"mount {m}" for m in _mounts_under([str(directory), str(run)])]
    out += [f"cgroup {c}" for c in CGROUP.glob(f"*/mcs-{mid}-*")]
    out += [f"cgroup {c}" for c in CGROUP.glob(f"mcs-{mid}-*")]
    if run.exists():
        out.append(f"directory {run}")
    return out


# --------------------------------------------------------------------------- start


def nodes_of(directory: Path, members: list[str], per_member: int = 1) -> list[Node]:
    mid = mesh_id(directory)
    return [
        Node(mid, name, m, k)
        for m, name in enumerate(members, start=1)
        for k in range(1, per_member + 1)
    ]


def import_images(bins: binaries.NodeBinaries, directory: Path, node: Node, archive: Path) -> None:
    """``ctr images import`` of ``archive`` (docker or OCI) into the node's containerd."""
    ctr = bins.containerd.parent / "ctr"
    sock = run_dir(directory) / node.short / "containerd.sock"
    _run(str(ctr), "--address", str(sock), "--namespace", "k8s.io", "images", "import",
         "--all-platforms", str(archive))  # fmt: skip


Spawn = Callable[[list[str], Path, dict[str, str] | None], "subprocess.Popen[bytes]"]


@dataclass
class Started:
    """A process the dataplane started: which member, a label, the process, its log."""

    member: str
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    where: str


async def start(
    directory: Path,
    members: list[tuple[str, int]],
    pki: Pki,
    bins: binaries.NodeBinaries,
    spawn: Spawn,
    started: list[Started],
    coredns: Path | None = None,
    per_member: int = 1,
) -> None:
    """Bring up the dataplane for ``members`` ((name, API server port) pairs): network,
    bridges, egress proxy, and per member one node; with ``coredns`` each node also runs
    the member's cluster DNS on its address, port 53, which its kubelet gives pods.
    Appends every process to ``started`` as soon as it runs (the caller stops them on
    failure)."""
    from mcs_mesh import images
    from mcs_mesh.host import DATAPLANE_TOOLS, require_packages

    if os.geteuid() != 0:
        raise DataplaneError(
            "mcs mesh up --dataplane needs root (network namespaces, cgroups, mounts): "
            "run it with sudo, or leave out --dataplane for the kwok mesh"
        )
    require_packages(DATAPLANE_TOOLS)
    mid = mesh_id(directory)
    logs = directory / "logs"
    nodes = nodes_of(directory, [name for name, _ in members], per_member)
    run_dir(directory).mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(create_network, mid, nodes)
    for n in nodes:
        create_cgroups(n)
    archive = await asyncio.to_thread(images.build_archive, bins.curl, directory / "images.tar")
    env = node_env(bins)

    def run(member: str, name: str, args: list[str], where: str) -> Started:
        log = logs / f"{member}-{name.replace(' ', '-')}.log"
        s = Started(member, name, spawn(args, log, env), log, where)
        started.append(s)
        return s

    for name, port in members:
        s = run(name, "apiserver-bridge", host_bridge_command(directory, name, port), "host")
        await asyncio.to_thread(wait_socket, apiserver_socket(directory, name), s.proc, s.log, 10)
    s = run(
        members[0][0],
        "egress-proxy",
        egress_command(directory, mid, sys.executable),
        router_netns(mid),
    )
    await asyncio.to_thread(wait_socket, egress_socket(directory), s.proc, s.log, 10)

    async def one(n: Node) -> None:
        cmds = node_commands(n, directory, pki, bins, n.ipv4 if coredns else None)
        if coredns is not None:
            cmds.commands["coredns"] = dns_command(n, directory, pki, coredns)
        where = f"netns {n.netns}"
        for comp in ("apiserver-bridge", "containerd"):
            run(n.member, f"node{n.k} {comp}", cmds.commands[comp], where)
        ctrd = started[-1]
        sock = run_dir(directory) / n.short / "containerd.sock"
        await asyncio.to_thread(wait_socket, sock, ctrd.proc, ctrd.log, 30)
        await asyncio.to_thread(import_images, bins, directory, n, archive)
        for comp in ("kubelet", "kube-proxy", "coredns"):
            if comp in cmds.commands:
                run(n.member, f"node{n.k} {comp}", cmds.commands[comp], where)

    await asyncio.gather(*(one(n) for n in nodes))


async def wait_nodes_ready(
    kubeconfig_path: Path,
    members: list[str],
    started: list[Started],
    within: float = 90,
    *,
    service_account: bool = True,
    nodes: int = 1,
) -> None:
    """Wait until every member's node is Ready (kubelet registered, CNI configured)."""
    from kubernetes_asyncio import client

    from mcs.runtime import kubeapi

    want = nodes

    async def one(member: str) -> None:
        api = await kubeapi.new_client(str(kubeconfig_path), member)
        async with api:
            core = client.CoreV1Api(api)
            deadline = time.monotonic() + within
            while True:
                for s in started:
                    if s.proc.poll() is not None:
                        tail = s.log.read_text(errors="replace")[-1500:]
                        raise DataplaneError(f"{s.member} {s.name} exited; {s.log}:\n{tail}")
                nodes = (await core.list_node(_request_timeout=10)).items
                ready = [
                    n
                    for n in nodes
                    if any(
                        c.type == "Ready" and c.status == "True" for c in n.status.conditions or []
                    )
                ]
                sas = await core.list_namespaced_service_account("default", _request_timeout=10)
                has_sa = any(sa.metadata.name == "default" for sa in sas.items)
                if len(ready) >= want and (has_sa or not service_account):
                    return
                if time.monotonic() > deadline:
                    raise DataplaneError(
                        f"{member}: {len(ready)}/{want} nodes Ready after {within:.0f}s "
                        f"(see {kubeconfig_path.parent / 'logs'}/{member}-node1-kubelet.log)"
                    )
                await asyncio.sleep(0.3)

    await asyncio.gather(*(one(m) for m in members))


def load(directory: Path, archive: Path) -> list[str]:
    """``mcs mesh load``: import ``archive`` into every node's containerd; the nodes."""
    directory = directory.resolve()
    bins = binaries.ensure_node()
    out = []
    for sock in sorted(run_dir(directory).glob("c*n*/containerd.sock")):
        short = sock.parent.name
        m, k = short[1:].split("n")
        node = Node(mesh_id(directory), f"cluster{m}", int(m), int(k))
        import_images(bins, directory, node, archive)
        out.append(node.name)
    if not out:
        raise DataplaneError(f"no dataplane node runs for the mesh in {directory}")
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def usage(directory: Path, pids: list[int], seconds: float = 2.0) -> str:
    """The whole mesh's CPU (over ``seconds``) and resident memory, shims and pods
    included: one line for ``mcs mesh status``."""

    everyone = sorted(
        set(pids) | set(dataplane_pids(directory)) | set(_cgroup_pids(mesh_id(directory)))
    )
    hz = os.sysconf("SC_CLK_TCK")
    before = {p: _cpu_ticks(p) for p in everyone}
    time.sleep(seconds)
    used = sum(max(0, _cpu_ticks(p) - before[p]) for p in everyone) / hz
    rss = sum(mesh_rss_mib(p) for p in everyone)
    return (
        f"whole mesh ({len(everyone)} processes, pods included): "
        f"CPU {100 * used / seconds:.0f}% of one core over {seconds:.0f}s, RSS {rss} MiB"
    )
