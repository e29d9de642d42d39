"""Cilium-style global Services on any CNI: pure functions, no I/O.

A Service ``ns/S`` annotated ``service.cilium.io/global: "true"`` in several member
clusters is one service across them (`cilium-mcs.md` §3). Cilium programs that in
its eBPF datapath; we use the object every Service dataplane and CoreDNS already
read: **EndpointSlices attached to the local Service**. Into cluster C, for every
remote cluster R whose backends C uses, we write R's endpoints as EndpointSlices
labelled ``kubernetes.io/service-name: S``, ``multicluster.kubernetes.io/source-cluster: R``,
our ``endpointslice.kubernetes.io/managed-by`` (kube's EndpointSlice controller
leaves them alone) and our ownership label. They never carry
``multicluster.kubernetes.io/service-name``: that marks the slices of an MCS import,
and a Service that is both global and exported gets both sets, independently.

Rules:

* **Annotations** (`parse`), new name first, then the legacy one, as Cilium's
  ``pkg/annotation/clustermesh_test.go``: global is ``"true"`` in any case, anything
  else false; shared is false unless global, true when global and unset, else
  ``"true"`` in any case; affinity is ignored unless global and lower-cased; ``none``
  and unknown values mean no preference (never Cilium's blackhole of
  cilium/cilium#46623). ``service.cilium.io/global-sync-endpoint-slices``: slices
  are our only dataplane, so they are written unless it says something other than
  ``"true"``; then C receives nothing (it still offers its backends if shared).
* **Who gets what** (`uses`): C uses R's backends exactly when S exists in both, is
  global in both, shared in R, and the namespace takes part in both
  (`mcs.core.namespaces`). An ExternalName Service neither offers nor receives, and
  ``default/kubernetes`` (the API server's Service) never receives.
* **Affinity** (`remote_wanted`): ``local`` offers remote backends only while C has
  no ready local endpoint (failover, and back as soon as one is ready again);
  ``remote`` cannot hide the local endpoints (kube's controller owns those slices),
  so C gets local + remote exactly as with no preference, and a `Note` says so.
* **Ports** (`match_ports`) are matched by name, as Cilium does: each port of C's
  Service takes the number R's slice has for the port of the same name and
  protocol. R's ports that C's Service lacks are dropped; a non-headless group left
  without ports gets no slice (no traffic could reach it).
* **Endpoints** keep addresses, ready/serving/terminating, hostname and zone;
  nodeName and targetRef name objects of another cluster and are dropped. When the
  local Service asks for topology-aware routing (`Side.topology_aware`), each remote
  endpoint with a zone gets ``hints.forZones`` of its zone: kube-proxy uses zone hints
  only when every ready endpoint has them, so remote slices never switch the local
  Service's zone-aware routing off (a remote endpoint without a zone still would).
* **global-sync-endpoint-slices** other than ``"true"``: this cluster receives nothing,
  and a ``EndpointSliceSyncDisabled`` Note says so (Cilium would still balance to the
  remote backends in eBPF; a user migrating would lose them silently otherwise).
  **Hostnames** that several clusters use (a StatefulSet with the same name
  everywhere) are kept by the first cluster only (C itself, then by cluster id) and
  dropped from the others' copies, so ``<host>.<svc>.<ns>.svc.cluster.local`` never
  silently resolves to pods of two clusters; a `Note` reports it.
* **Slices**: grouped by (cluster, addressType, ports), at most 100 endpoints each,
  named ``<S>-<hash>-<index>`` (the hash covers a "global:" tag, so never the name
  of an import slice); byte-identical for an unchanged input, so a steady state makes
  no writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mcs.core.api import (
    CONTROLLER_NAME,
    ENDPOINTSLICE_MANAGED_BY,
    FIELD_MANAGER,
    KUBE_SERVICE_NAME,
    MANAGED_BY,
    SOURCE_CLUSTER,
    Obj,
)
from mcs.core.endpoints import build_slices, copy_endpoints, group_endpoints, localize

__all__ = [
    "AFFINITY",
    "AFFINITY_ALIAS",
    "GLOBAL",
    "GLOBAL_ALIAS",
    "SHARED",
    "SHARED_ALIAS",
    "SYNC_SLICES",
    "TOPOLOGY_HINTS",
    "TOPOLOGY_MODE",
    "Annotations",
    "ClusterPlan",
    "Note",
    "Side",
    "annotations_of",
    "match_ports",
    "parse",
    "plan_cluster",
    "ready_count",
    "remote_wanted",
    "uses",
]

GLOBAL = "service.cilium.io/global"
GLOBAL_ALIAS = "io.cilium/global-service"
SHARED = "service.cilium.io/shared"
SHARED_ALIAS = "io.cilium/shared-service"
AFFINITY = "service.cilium.io/affinity"
AFFINITY_ALIAS = "io.cilium/service-affinity"
SYNC_SLICES = "service.cilium.io/global-sync-endpoint-slices"
TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"  # deprecated since 1.27

Affinity = Literal["", "local", "remote"]


# --- annotations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotations:
    """A Service's global-service annotations as Cilium reads them.

    ``affinity`` is the effective preference ("" = none); ``affinity_value`` is what
    the annotation said (lower-cased), for messages about values we ignore.
    """

    is_global: bool = False
    shared: bool = False
    affinity: Affinity = ""
    affinity_value: str = ""
    sync_slices: bool = True


def _get(annotations: Mapping[str, Any], *keys: str) -> str | None:
    """The value of the first of ``keys`` present (Cilium's ``annotation.Get``)."""
    for key in keys:
        if key in annotations:
            return str(annotations[key])
    return None


def parse(annotations: Mapping[str, Any] | None) -> Annotations:
    """The global-service annotations of a Service (see the module docstring)."""
    ann = annotations or {}
    value = _get(ann, GLOBAL, GLOBAL_ALIAS)
    if value is None or value.lower() != "true":
        return Annotations()
    shared = _get(ann, SHARED, SHARED_ALIAS)
    affinity_value = (_get(ann, AFFINITY, AFFINITY_ALIAS) or "").lower()
    affinity: Affinity = (
        "local" if affinity_value == "local" else "remote" if affinity_value == "remote" else ""
    )
    sync = _get(ann, SYNC_SLICES)
    return Annotations(
        is_global=True,
        shared=shared is None or shared.lower() == "true",
        affinity=affinity,
        affinity_value=affinity_value,
        sync_slices=sync is None or sync.lower() == "true",
    )


def annotations_of(service: Obj | None) -> Annotations:
    if service is None:
        return Annotations()
    return parse((service.get("metadata") or {}).get("annotations"))


# --- who gets what -----------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One cluster's view of Service ``ns/S``: the Service (None when absent), whether
    the namespace takes part there, and the cluster's own EndpointSlices of S (those
    of kube's controller or any other manager but us)."""

    cluster: str
    service: Obj | None
    namespace_ok: bool = True
    slices: Sequence[Obj] = ()

    @property
    def annotations(self) -> Annotations:
        return annotations_of(self.service)

    @property
    def usable(self) -> bool:
        spec = (self.service or {}).get("spec") or {}
        return (
            self.service is not None
            and self.namespace_ok
            and spec.get("type") != "ExternalName"
            and self.annotations.is_global
        )

    @property
    def offers(self) -> bool:
        """Its backends go to the other clusters where S is global."""
        return self.usable and self.annotations.shared

    @property
    def receives(self) -> bool:
        """It gets the backends the other clusters offer."""
        return self.usable and self.annotations.sync_slices

    @property
    def headless(self) -> bool:
        return ((self.service or {}).get("spec") or {}).get("clusterIP") == "None"

    @property
    def topology_aware(self) -> bool:
        """The Service asks for topology-aware routing (``trafficDistribution``, or the
        ``service.kubernetes.io/topology-mode`` annotation, or its deprecated form)."""
        service = self.service or {}
        if (service.get("spec") or {}).get("trafficDistribution"):
            return True
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        mode = _get(annotations, TOPOLOGY_MODE, TOPOLOGY_HINTS)
        return mode is not None and mode.lower() not in ("", "disabled")


def uses(local: Side, remote: Side) -> bool:
    """Whether cluster ``local`` uses the backends of ``remote`` (before affinity):
    S global in both, shared in ``remote``, the namespace taking part in both."""
    return local.cluster != remote.cluster and local.receives and remote.offers


def ready_count(slices: Iterable[Obj]) -> int:
    """Distinct ready addresses in ``slices`` (ready unset counts as ready, as in the API)."""
    ready: set[tuple[str, ...]] = set()
    for s in slices:
        for ep in copy_endpoints(s.get("endpoints")):
            if ep["conditions"].get("ready", True):
                ready.add(tuple(ep["addresses"]))
    return len(ready)


def remote_wanted(affinity: Affinity, local_ready: int) -> bool:
    """Whether remote backends are offered at all under ``affinity``: with ``local``
    only while no local endpoint is ready; otherwise always."""
    return not (affinity == "local" and local_ready > 0)


# --- ports -------------------------------------------------------------------------------


def _service_ports(service: Obj | None) -> list[Mapping[str, Any]]:
    ports = ((service or {}).get("spec") or {}).get("ports")
    return [p for p in ports if isinstance(p, Mapping)] if isinstance(ports, list) else []


def match_ports(
    service_ports: Sequence[Mapping[str, Any]], slice_ports: object
) -> list[dict[str, Any]]:
    """The ports of a slice of remote endpoints attached to a local Service with
    ``service_ports``: each local port whose name and protocol the remote slice has,
    with the remote number (the pods' port) and the local port's appProtocol."""
    remote: dict[tuple[str, str], int] = {}
    for p in slice_ports if isinstance(slice_ports, list) else []:
        if isinstance(p, Mapping) and isinstance(p.get("port"), int):
            remote.setdefault((p.get("name") or "", p.get("protocol") or "TCP"), p["port"])
    out: list[dict[str, Any]] = []
    for sp in service_ports:
        name, protocol = sp.get("name") or "", sp.get("protocol") or "TCP"
        number = remote.get((name, protocol))
        if number is None:
            continue
        port: dict[str, Any] = {"name": name, "protocol": protocol, "port": number}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


# --- the plan for one cluster ------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """Something the user should know about a global Service in one cluster (an
    Event on the Service, and a line of ``mcs status``)."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


@dataclass(frozen=True)
class ClusterPlan:
    """What cluster ``cluster`` should hold for global Service ``ns/S``."""

    cluster: str
    slices: list[dict[str, Any]] = field(default_factory=list)
    used: tuple[str, ...] = ()  # remote clusters whose backends are in ``slices``
    held_back: tuple[str, ...] = ()  # remote clusters offered but held back by affinity
    notes: tuple[Note, ...] = ()


def plan_cluster(namespace: str, name: str, local: Side, others: Sequence[Side]) -> ClusterPlan:
    """The EndpointSlices of remote backends cluster ``local.cluster`` should hold for
    Service ``namespace/name`` (sorted by name), and what to tell the user."""
    offering = sorted((r for r in others if uses(local, r)), key=lambda r: r.cluster)
    if local.usable and not local.annotations.sync_slices:
        # Cilium only stops writing slices then; its eBPF still balances to remote pods.
        offered = [r.cluster for r in others if r.cluster != local.cluster and r.offers]
        note = Note(
            "EndpointSliceSyncDisabled",
            f'{SYNC_SLICES} is not "true": this cluster receives no remote backends '
            f"({len(offered)} remote cluster(s) offer some), because EndpointSlices are the "
            "only dataplane mcs has; under Cilium the remote backends would still be used. "
            "Remove the annotation to receive them.",
            "Warning",
        )
        return ClusterPlan(local.cluster, notes=(note,))
    if not local.receives or (namespace, name) == ("default", "kubernetes"):
        # The API server's own Service never takes other clusters' endpoints.
        return ClusterPlan(local.cluster)
    ann = local.annotations
    notes: list[Note] = []
    if ann.affinity == "remote":
        notes.append(
            Note(
                "AffinityRemoteNotEnforced",
                f"{AFFINITY}=remote: mcs cannot prefer remote backends on this CNI, because "
                "the local EndpointSlices belong to kube's EndpointSlice controller; "
                "kube-proxy balances over local and remote endpoints alike "
                f"({len(offering)} remote cluster(s)).",
            )
        )
    elif ann.affinity_value not in ("", "local", "none"):
        notes.append(
            Note(
                "AffinityIgnored",
                f'{AFFINITY}="{ann.affinity_value}" is not local or remote; treated as no '
                "preference (local and remote backends).",
                "Warning",
            )
        )
    if not offering:
        return ClusterPlan(local.cluster, notes=tuple(notes))
    if not remote_wanted(ann.affinity, ready_count(local.slices)):
        held = tuple(r.cluster for r in offering)
        return ClusterPlan(local.cluster, held_back=held, notes=tuple(notes))

    service_ports = _service_ports(local.service)
    headless = local.headless
    # Hostnames: the first cluster to use one (the local one, then by id) keeps it.
    owner: dict[str, str] = {}
    for ep in (e for s in local.slices for e in copy_endpoints(s.get("endpoints"))):
        if "hostname" in ep:
            owner.setdefault(ep["hostname"], local.cluster)
    clashes: dict[str, list[str]] = {}
    out: list[dict[str, Any]] = []
    used: list[str] = []
    for remote in offering:
        groups = group_endpoints(
            remote.slices,
            lambda ports: match_ports(service_ports, ports),
            keep_portless=headless,
        )
        if groups:
            used.append(remote.cluster)
        labels = {
            KUBE_SERVICE_NAME: name,
            SOURCE_CLUSTER: remote.cluster,
            ENDPOINTSLICE_MANAGED_BY: CONTROLLER_NAME,
            MANAGED_BY: FIELD_MANAGER,
        }
        for group in groups:
            localize(group[2], keep_node=False, zone_hints=local.topology_aware)
            for ep in group[2]:
                host = ep.get("hostname")
                if host is None:
                    continue
                first = owner.setdefault(host, remote.cluster)
                if first != remote.cluster:
                    del ep["hostname"]
                    clashes.setdefault(host, [first]).append(remote.cluster)
            # "global:" cannot be part of a cluster id: never the name of an import slice.
            out += build_slices(namespace, name, f"global:{remote.cluster}", labels, group)
    for host, clusters in sorted(clashes.items()):
        where = ", ".join(dict.fromkeys(clusters))
        notes.append(
            Note(
                "HostnameClash",
                f'hostname "{host}" is used by endpoints in clusters {where}; '
                f"{host}.{name}.{namespace}.svc resolves to those of {clusters[0]} only. "
                "Give StatefulSets cluster-unique names.",
                "Warning",
            )
        )
    out.sort(key=lambda s: str(s["metadata"]["name"]))
    return ClusterPlan(local.cluster, out, tuple(used), notes=tuple(notes))
