"""Workloads in a mesh member: the real kube-controller-manager and kube-scheduler,
and kwok simulating a few Nodes, so that Deployments get Pods that run.

Per member ``clusterN``:

* **kube-controller-manager**, as kubeadm wires it: its own client certificate
  (``system:kube-controller-manager``), ``--use-service-account-credentials`` (each
  controller acts as its ``kube-system`` ServiceAccount with the bootstrap
  ``system:controller:*`` role), the mesh's service-account signing key and CA, and
  only the controllers a workload needs (:data:`CONTROLLERS`): no cloud, node
  lifecycle, IPAM, volume or certificate controllers.
* **kube-scheduler** with its own client certificate (``system:kube-scheduler``).
* **kwok** (client certificate in ``system:masters``: it writes Node and Pod status
  and Node leases) managing the Nodes annotated ``kwok.x-k8s.io/node=fake`` with
  upstream's "fast" stages, shipped next to the binary by the build: Pods become
  Running and Ready at once, with IPs from their Node's ``podCIDRs``.
* ``nodes`` Nodes ``clusterN-node1..K``, each with an IPv4 /24 and an IPv6 /64 of the
  member's pod CIDRs (:func:`pod_cidrs`), created by mcs and kept alive by kwok.

Leader election is off (one of each per member) and every process serves its
health endpoint on a free loopback port only, with no delegated authentication:
``/healthz`` is always allowed, anything else forbidden.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime import kubeapi
from mcs_mesh.binaries import Binaries
from mcs_mesh.certs import Pki, issue_client

#: kube-controller-manager controllers a workload needs (names as ``--help`` lists them)
CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
)
COMPONENTS = ("kube-controller-manager", "kube-scheduler", "kwok")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)


def pod_cidrs(index: int) -> tuple[str, str]:
    """The dual-stack pod CIDRs of member ``index`` (1-based): distinct across members and
    apart from the service CIDRs (``10.10<i>.0.0/16``)."""
    return f"10.{240 + index}.0.0/16", f"fd00:10:{240 + index}::/56"


def node_cidrs(index: int, node: int) -> list[str]:
    """Node ``node`` (1-based) of member ``index``: a /24 and a /64 of the member's pod CIDRs."""
    return [f"10.{240 + index}.{node}.0/24", f"fd00:10:{240 + index}:{node:x}::/64"]


def kubeconfig(server: str, pki: Pki, who: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mesh",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": who,
                "user": {
                    "client-certificate": str(pki.client_cert(who)),
                    "client-key": str(pki.client_key(who)),
                },
            }
        ],
        "contexts": [{"name": "mesh", "context": {"cluster": "mesh", "user": who}}],
        "current-context": "mesh",
    }


def write_kubeconfigs(directory: Path, pki: Pki, member: str, server: str) -> dict[str, Path]:
    """Client certificates and kubeconfigs of member's three components; name -> path."""
    users = {
        "kube-controller-manager": ("system:kube-controller-manager", None),
        "kube-scheduler": ("system:kube-scheduler", None),
        "kwok": ("kwok-controller", "system:masters"),
    }
    out = {}
    folder = directory / "kubeconfigs"
    folder.mkdir(exist_ok=True)
    for component, (cn, org) in users.items():
        who = f"{member}-{component}"
        issue_client(pki, who, cn, org)
        path = folder / f"{who}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig(server, pki, who), sort_keys=False))
        path.chmod(0o600)
        out[component] = path
    return out


def kwok_config(bins: Binaries, path: Path) -> Path:
    """The kwok configuration: upstream's fast node and pod stages, as kwokctl sets them up."""
    assert bins.kwok is not None
    stages = bins.kwok.parent / "stages"
    docs = [(stages / name).read_text() for name in STAGES]
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    return path


def commands(
    bins: Binaries,
    directory: Path,
    pki: Pki,
    member: str,
    kubeconfigs: dict[str, Path],
    ports: dict[str, int],
) -> dict[str, list[str]]:
    """The command line of each component of ``member`` (every one names ``directory``)."""
    assert bins.kube_controller_manager and bins.kube_scheduler and bins.kwok
    certs = directory / "pki" / member
    kcm = kubeconfigs["kube-controller-manager"]
    sched = kubeconfigs["kube-scheduler"]
    return {
        "kube-controller-manager": [
            str(bins.kube_controller_manager),
            f"--kubeconfig={kcm}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={certs}/kcm",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-name={member}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=0",
        ],
        "kube-scheduler": [
            str(bins.kube_scheduler),
            f"--kubeconfig={sched}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-scheduler']}",
            f"--cert-dir={certs}/scheduler",
            "--leader-elect=false",
            "--profiling=false",
            "--v=0",
        ],
        "kwok": [
            str(bins.kwok),
            f"--kubeconfig={kubeconfigs['kwok']}",
            f"--config={kwok_config(bins, directory / f'kwok-{member}.yaml')}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--node-ip=127.0.0.1",
            f"--node-port={ports['kwok']}",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            f"--tls-cert-file={pki.serving_cert(member)}",
            f"--tls-private-key-file={pki.serving_key(member)}",
            "--node-lease-duration-seconds=40",
        ],
    }


def health_urls(ports: dict[str, int]) -> dict[str, str]:
    return {
        "kube-controller-manager": f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{ports['kube-scheduler']}/healthz",
        "kwok": f"https://127.0.0.1:{ports['kwok']}/healthz",
    }


def node(member: str, index: int, number: int) -> dict[str, Any]:
    name = f"{member}-node{number}"
    cidrs = node_cidrs(index, number)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "kwok",
                "topology.kubernetes.io/zone": f"{member}-zone{number}",
                "type": "kwok",
            },
        },
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
    }


async def create_nodes(
    kubeconfig_path: Path,
    context: str,
    index: int,
    count: int,
    kcm_log: Path,
    within: float = 120,
) -> None:
    """Create ``count`` kwok Nodes in member ``context`` and wait until kwok reports them Ready
    and the controller-manager has made the ``default`` ServiceAccount (its controllers run).
    That took over 60 s once on a loaded 2-core machine, hence 120."""
    api = await kubeapi.new_client(str(kubeconfig_path), context)
    async with api:
        core = client.CoreV1Api(api)
        for n in range(1, count + 1):
            try:
                await core.create_node(node(context, index, n), _request_timeout=10)
            except ApiException as e:
                if e.status != 409:
                    raise
        deadline = time.monotonic() + within
        while True:
            nodes = (await core.list_node(_request_timeout=10)).items
            ready = [
                n.metadata.name
                for n in nodes
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            sas = await core.list_namespaced_service_account("default", _request_timeout=10)
            has_sa = any(sa.metadata.name == "default" for sa in sas.items)
            if len(ready) >= count and has_sa:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{context}: {len(ready)}/{count} kwok Nodes Ready and "
                    f"default ServiceAccount {'present' if has_sa else 'missing'} after "
                    f"{within:.0f}s (kube-controller-manager's log: {kcm_log})"
                )
            await asyncio.sleep(0.2)
