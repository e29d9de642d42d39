"""The EndpointSlices an import should have in one local cluster: pure functions, no I/O.

For every cluster that exports a service, the controller copies that cluster's
EndpointSlices of the Service into each local cluster, as the MCS API prescribes
(KEP-1645 "Using EndpointSlice objects to track endpoints"): every slice holds the
endpoints of exactly one source cluster and carries the labels
``multicluster.kubernetes.io/service-name`` and ``multicluster.kubernetes.io/source-cluster``
and a ``endpointslice.kubernetes.io/managed-by`` that is ours. For a ClusterSetIP
import the slices also carry ``kubernetes.io/service-name: <derived Service>``, so
kube-proxy programs the import's VIP with them; CoreDNS's ``multicluster`` support
reads them for headless names.

Rules (`desired_slices`):

* **Grouping.** Endpoints are grouped by (source cluster, addressType, translated
  ports): the source controller already splits a Service's endpoints by port mapping
  (a named targetPort can resolve to different numbers on different pods), and one
  slice has one port list, so the groups must stay apart. addressType follows the
  source (IPv4, IPv6 or FQDN).
* **Ports** (conformance "StrictPortConflict", cases 20 and 21). A slice advertises
  only the merged ports its source cluster really serves (``merged.exposed_ports``),
  in merged order. A source slice port maps to the exposed merged port with the same
  name and protocol; it keeps the source's number (the *target* port on the pods) and
  takes the merged port's appProtocol. It is named as the derived Service names the
  port (`mcs.core.plan.derived_port_name`: an unnamed port among several becomes
  ``<protocol>-<port>``) for a ClusterSetIP import, so that kube-proxy matches it, and
  as the ServiceImport names it for a Headless import (DNS gives SRV records to named
  ports only). Source ports that match no exposed merged port are dropped, and so are
  ports without a number.
* **No ports left.** A ClusterSetIP group whose ports are all dropped gets no slice:
  no traffic could reach its endpoints through the VIP. A Headless group keeps its
  slices with ``ports: []``, because DNS answers with the addresses (CoreDNS treats a
  slice without ports as "any port"). A cluster that exposes no port at all therefore
  contributes nothing to a ClusterSetIP import and its addresses to a Headless one.
* **Endpoints** keep ``addresses``, ``conditions`` (ready, serving, terminating, as
  given: a not-ready endpoint stays, with ``ready: false``), ``hostname`` and
  ``zone`` (`localize`). ``nodeName`` is kept only for the endpoints of the cluster the
  slices are written into (its own nodes: ``internalTrafficPolicy: Local`` on the
  derived Service then reaches the node's own pods), and dropped for the others, whose
  nodes kube-proxy would match against its own. ``targetRef`` is dropped. **Topology**:
  when the import has a ``trafficDistribution``, every endpoint with a zone gets
  ``hints.forZones`` of its own zone, so kube-proxy's zone-aware routing (which needs
  hints on every ready endpoint) holds for the clusterset IP across clusters whose
  zones share names; other hints are dropped. Endpoints without addresses are dropped.
  An endpoint that several source slices of one group list (a transient state of the
  source controller) appears once, the readiest copy winning.
* **Order and chunking.** Endpoints are sorted by their addresses and cut into slices
  of at most 100 (`MAX_ENDPOINTS_PER_SLICE`, like the default controller). A group
  without endpoints gets no slice.
* **Names** are ``<import name>-<hash>-<index>``: ``hash`` is 10 base32hex characters
  of sha256 over (cluster, addressType, ports), ``index`` counts the group's chunks
  from 0. The hash has no ``-``, so two imports never share a name. An unchanged
  source gives byte-identical slices (same names, same key order), whatever the
  order of the source slices and of their endpoints; a change of ports renames the
  group (the writer deletes the old slices and creates the new ones).
* **Source slices** managed by us (our ``endpointslice.kubernetes.io/managed-by``)
  are ignored, as are sources of clusters that are not in ``merged.clusters``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mcs.core.api import (
    CONTROLLER_NAME,
    ENDPOINTSLICE_MANAGED_BY,
    FIELD_MANAGER,
    KUBE_SERVICE_NAME,
    MANAGED_BY,
    SERVICE_NAME,
    SOURCE_CLUSTER,
    Obj,
    labels_of,
    mcs_slice,
)
from mcs.core.imports import derived_port_name
from mcs.core.merge import MergeResult
from mcs.core.model import Port

__all__ = [
    "MAX_ENDPOINTS_PER_SLICE",
    "Group",
    "build_slices",
    "copy_endpoints",
    "desired_slices",
    "group_endpoints",
    "source_cluster",
    "transform",
]

MAX_ENDPOINTS_PER_SLICE = 100

_API_VERSION = "discovery.k8s.io/v1"
_CONDITIONS = ("ready", "serving", "terminating")
_KEPT_LABELS = (
    SERVICE_NAME,
    SOURCE_CLUSTER,
    KUBE_SERVICE_NAME,
    ENDPOINTSLICE_MANAGED_BY,
    MANAGED_BY,
)
_KEPT_METADATA = ("name", "namespace", "uid", "deletionTimestamp")
_MAX_NAME = 253

Group = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]
"""Endpoints that share one slice shape: (addressType, ports, endpoints)."""


def desired_slices(
    namespace: str,
    name: str,
    merged: MergeResult,
    sources: Mapping[str, Sequence[Obj]],
    derived_service: str | None,
    local_cluster: str | None = None,
) -> list[dict[str, Any]]:
    """The EndpointSlices import ``namespace/name`` should have in one local cluster.

    ``sources`` maps a cluster id to that cluster's EndpointSlices of Service ``name``
    (raw API dicts or `transform`'s output; the same result either way).
    ``derived_service`` is the derived Service's name for a ClusterSetIP import, else
    None; ``local_cluster`` the id of the cluster the slices go to. Returns complete
    EndpointSlice objects sorted by name; see the module docstring for the rules.
    """
    headless = merged.spec.type == "Headless"
    count = len(merged.spec.ports)
    zone_hints = merged.spec.traffic_distribution is not None
    out: list[dict[str, Any]] = []
    for cluster in merged.clusters:
        exposed = merged.exposed_ports.get(cluster, ())
        labels = _labels(name, cluster, derived_service)
        for group in group_endpoints(
            sources.get(cluster, ()),
            lambda ports: _translate_ports(ports, exposed, count, headless),  # noqa: B023
            keep_portless=headless,
        ):
            localize(group[2], keep_node=cluster == local_cluster, zone_hints=zone_hints)
            out += build_slices(namespace, name, cluster, labels, group)
    out.sort(key=lambda s: str(s["metadata"]["name"]))
    return out


def group_endpoints(
    sources: Iterable[Obj],
    ports_of: Callable[[object], list[dict[str, Any]]],
    *,
    keep_portless: bool,
) -> list[Group]:
    """The endpoints of ``sources`` (source slices that are not ours) grouped by
    (addressType, ports as ``ports_of`` translates a slice's ports), each group's
    endpoints copied (`copy_endpoints`) and deduplicated, groups in a stable order. A
    slice whose ports all translate away is left out unless ``keep_portless``."""
    groups: dict[tuple[str, str], Group] = {}
    for source in sources:
        address_type = source.get("addressType")
        if mcs_slice(source) or not isinstance(address_type, str):
            continue
        ports = ports_of(source.get("ports"))
        if not ports and not keep_portless:
            continue
        group = groups.setdefault((address_type, _canonical(ports)), (address_type, ports, []))
        group[2].extend(copy_endpoints(source.get("endpoints")))
    return [(t, ports, _dedupe(eps)) for _, (t, ports, eps) in sorted(groups.items())]


def localize(endpoints: list[dict[str, Any]], *, keep_node: bool, zone_hints: bool) -> None:
    """Fit copied endpoints (`copy_endpoints`) to the cluster they are written into, in
    place: ``nodeName`` only when ``keep_node`` (they are that cluster's own), and
    ``hints.forZones`` of the endpoint's own zone when ``zone_hints`` (topology-aware
    routing asked for), no other hints."""
    for ep in endpoints:
        if not keep_node:
            ep.pop("nodeName", None)
        ep.pop("hints", None)
        if zone_hints and "zone" in ep:
            ep["hints"] = {"forZones": [{"name": ep["zone"]}]}


def build_slices(
    namespace: str, name: str, tag: str, labels: Mapping[str, str], group: Group
) -> list[dict[str, Any]]:
    """One group's EndpointSlices: its endpoints cut into slices of at most
    `MAX_ENDPOINTS_PER_SLICE`, named ``<name>-<hash>-<index>``, the hash covering
    ``tag`` (the source cluster, or a tag of it), the address type and the ports."""
    address_type, ports, endpoints = group
    digest = _digest(tag, address_type, _canonical(ports))
    return [
        {
            "apiVersion": _API_VERSION,
            "kind": "EndpointSlice",
            "metadata": {
                "name": _slice_name(name, digest, index // MAX_ENDPOINTS_PER_SLICE),
                "namespace": namespace,
                "labels": dict(labels),
            },
            "addressType": address_type,
            "endpoints": list(endpoints[index : index + MAX_ENDPOINTS_PER_SLICE]),
            "ports": [dict(p) for p in ports],
        }
        for index in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)
    ]


def source_cluster(obj: Obj) -> str | None:
    """The ``multicluster.kubernetes.io/source-cluster`` label of an EndpointSlice."""
    value = labels_of(obj).get(SOURCE_CLUSTER)
    return value if isinstance(value, str) and value else None


def transform(obj: Obj) -> dict[str, Any]:
    """Trim an EndpointSlice to what the controller reads, for the informer's cache.

    Keeps ``metadata`` name, namespace, uid, deletionTimestamp and the labels this
    module and the controller use; ``addressType``; endpoints as `desired_slices`
    writes them; ports (name, protocol, port, appProtocol). It drops resourceVersion,
    so an update that changes nothing kept here (a pod's targetRef) is no
    event. ``desired_slices`` gives the same result on trimmed and raw slices, and a
    slice of ours that is up to date trims to its desired form (apart from
    ``metadata.uid``/``deletionTimestamp``). Never raises.
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    labels = labels_of(obj)
    out_meta: dict[str, Any] = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    out_meta["labels"] = {k: labels[k] for k in _KEPT_LABELS if k in labels}
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion", _API_VERSION),
        "kind": obj.get("kind", "EndpointSlice"),
        "metadata": out_meta,
    }
    if "addressType" in obj:
        out["addressType"] = obj["addressType"]
    out["endpoints"] = copy_endpoints(obj.get("endpoints"))
    out["ports"] = [_port(p) for p in _dicts(obj.get("ports"))]
    return out


# --- helpers -----------------------------------------------------------------------------


def _labels(name: str, cluster: str, derived_service: str | None) -> dict[str, str]:
    labels = {SERVICE_NAME: name, SOURCE_CLUSTER: cluster}
    if derived_service is not None:
        labels[KUBE_SERVICE_NAME] = derived_service
    labels[ENDPOINTSLICE_MANAGED_BY] = CONTROLLER_NAME
    labels[MANAGED_BY] = FIELD_MANAGER
    return labels


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _port(p: Mapping[str, Any]) -> dict[str, Any]:
    """A slice port in one canonical form: name and protocol always, port when numbered."""
    out: dict[str, Any] = {"name": p.get("name") or "", "protocol": p.get("protocol") or "TCP"}
    if isinstance(p.get("port"), int):
        out["port"] = p["port"]
    if p.get("appProtocol"):
        out["appProtocol"] = p["appProtocol"]
    return out


def _translate_ports(
    source_ports: object, exposed: Iterable[Port], count: int, headless: bool
) -> list[dict[str, Any]]:
    """The slice ports for one source slice: one per exposed merged port it serves."""
    by_id: dict[tuple[str, str], int] = {}
    for raw in _dicts(source_ports):
        p = _port(raw)
        if "port" in p:
            by_id.setdefault((p["name"], p["protocol"]), p["port"])
    out: list[dict[str, Any]] = []
    for merged_port in exposed:
        target = by_id.get((merged_port.name, merged_port.protocol))
        if target is None:
            continue
        port: dict[str, Any] = {
            "name": merged_port.name if headless else derived_port_name(merged_port, count),
            "protocol": merged_port.protocol,
            "port": target,
        }
        if merged_port.app_protocol is not None:
            port["appProtocol"] = merged_port.app_protocol
        out.append(port)
    return out


def copy_endpoints(value: object) -> list[dict[str, Any]]:
    out = []
    for ep in _dicts(value):
        addresses = ep.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            continue
        conditions = ep.get("conditions")
        conditions = conditions if isinstance(conditions, Mapping) else {}
        endpoint: dict[str, Any] = {
            "addresses": [str(a) for a in addresses],
            "conditions": {
                c: bool(conditions[c]) for c in _CONDITIONS if conditions.get(c) is not None
            },
        }
        for field in ("hostname", "zone", "nodeName"):
            if isinstance(ep.get(field), str) and ep[field]:
                endpoint[field] = ep[field]
        hints = ep.get("hints")
        zones = hints.get("forZones") if isinstance(hints, Mapping) else None
        names = [z["name"] for z in _dicts(zones) if isinstance(z.get("name"), str)]
        if names:
            endpoint["hints"] = {"forZones": [{"name": n} for n in names]}
        out.append(endpoint)
    return out


def _dedupe(endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by addresses; of endpoints with the same addresses keep the readiest."""

    def rank(ep: dict[str, Any]) -> tuple[list[str], bool, bool, str]:
        cond = ep["conditions"]
        # ready/serving unset count as true (the API's "unknown means ready").
        return (
            ep["addresses"],
            cond.get("ready") is False,
            cond.get("serving") is False,
            _canonical(ep),
        )

    out: list[dict[str, Any]] = []
    for ep in sorted(endpoints, key=rank):
        if not out or out[-1]["addresses"] != ep["addresses"]:
            out.append(ep)
    return out


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _digest(cluster: str, address_type: str, ports_json: str) -> str:
    raw = hashlib.sha256(_canonical([cluster, address_type, ports_json]).encode()).digest()
    return base64.b32hexencode(raw).decode().lower()[:10]


def _slice_name(name: str, digest: str, index: int) -> str:
    suffix = f"-{digest}-{index}"
    return name[: _MAX_NAME - len(suffix)].rstrip(".-") + suffix
