"""What one member may tell the others: pure checks, no I/O.

A member cluster (or a tenant in it) controls the Services, EndpointSlices and
ServiceExports the controller reads from it. Nothing it writes there may make the
other members do something their API servers would refuse, or point their cluster-set
VIPs at addresses outside that member (the pattern of CVE-2021-25740). Two checks:

**Endpoints** (`check_slice`). A source EndpointSlice counts only when its
``endpointslice.kubernetes.io/managed-by`` matches the policy (`EndpointPolicy`:
``--source-slice-managers``, default every manager, minus ``--ignore-slice-managers``,
default the controllers known to hold endpoints *imported* from other clusters, whose
re-export would duplicate or loop; our own slices never count). Each endpoint of a
counted slice is then kept or dropped on its own:

* every address must be what the API server accepts in an EndpointSlice of that
  ``addressType`` (kubernetes ``pkg/apis/discovery/validation``): for IPv4/IPv6 a
  valid address of that family in its plain form (no IPv4-mapped IPv6, no zone, no
  leading zeros) that is not unspecified, loopback, link-local unicast or multicast
  (the API refuses link-local multicast; any multicast is refused here); for FQDN a
  DNS-1123 subdomain of at least two labels; 1 to 100 addresses;
* a ``hostname`` must be a DNS-1123 label;
* no address is a well-known cloud metadata address (`METADATA_ADDRESSES`), whatever
  the ranges say;
* when the member has allowed ranges (``--member-cidrs``), every IP address must lie
  in one of them, and FQDN endpoints are dropped (a name can resolve anywhere).

**Whose ranges.** The ranges are bound to the member *as the operator configured it*
(its kubeconfig context, `EndpointPolicy.member_cidrs`), never to the cluster id the
member publishes about itself in its ClusterProperty: `EndpointPolicy.for_member`
gives the policy of one member, keyed by whatever id it has now. Once ranges are in
use, a member without ranges offers no endpoints at all (reason ``no-ranges``): a
forgotten or mistyped entry fails closed, not open.

The rest of the slice is kept. The result is a pure function of
``(cluster, slice, policy)`` so every consumer of source slices (MCS imports, global
services) applies the same filter.

**Exported metadata** (`metadata_problems`). ``exportedLabels`` and
``exportedAnnotations`` of a ServiceExport are copied onto the ServiceImport of every
member, so they are checked as the API server checks metadata
(``apimachinery/pkg/api/validation`` and ``pkg/util/validation``): qualified-name keys,
label values, annotation total size at most 256 KiB; plus our own rules: no key under
``kubernetes.io/`` or ``k8s.io/`` (or a subdomain of either: those are reserved for
Kubernetes), and labels and annotations together at most `MAX_EXPORTED_METADATA`
bytes (every member holds a copy). An operator may restrict the keys further (every
key must match one of the ``--exported-metadata-allow`` patterns): an exported label
such as ``argocd.argoproj.io/instance`` would otherwise make another cluster's tools
adopt the import.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mcs.core.api import CONTROLLER_NAMES, ENDPOINTSLICE_MANAGED_BY, Obj

__all__ = [
    "DEFAULT_IGNORED_MANAGERS",
    "MAX_EXPORTED_METADATA",
    "METADATA_ADDRESSES",
    "DroppedEndpoint",
    "EndpointPolicy",
    "address_problem",
    "bind_member_cidrs",
    "check_slice",
    "filter_slices",
    "metadata_problems",
    "parse_member_cidrs",
]


# Controllers whose EndpointSlices on a Service hold endpoints of *other* clusters.
DEFAULT_IGNORED_MANAGERS = (
    *CONTROLLER_NAMES,  # mcs itself, today's name and earlier releases'
    "endpointslice-mesh-controller.cilium.io",  # Cilium's clustermesh EndpointSlice sync
    "endpointslice-local-mcsapi-controller.cilium.io",  # Cilium's MCS mirror
)

MAX_ADDRESSES = 100  # per endpoint, as the API allows
MAX_EXPORTED_METADATA = 64 * 1024  # bytes of exported labels + annotations (keys + values)
TOTAL_ANNOTATION_SIZE = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB
RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata services: an endpoint there would hand the credentials of the
# node that routes to it to whoever exported it. 169.254.169.254 (AWS, GCP, Azure, OCI,
# OpenStack) is link-local and refused as such too; fd00:ec2::254 is AWS's IPv6
# address (a unique-local one); 100.100.100.200 is Alibaba Cloud's (shared space).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


@dataclass(frozen=True)
class EndpointPolicy:
    """Which source slices count and which addresses each member may advertise.

    ``cidrs`` maps a cluster id (the ``cluster`` given to `check_slice`) to its allowed
    ranges. ``member_cidrs`` maps a member's *context*, as the operator configured it,
    to its ranges (``mcs run --member-cidrs``, bound by `bind_member_cidrs`); when it is
    not empty, ranges are in use: `for_member` gives one member's policy, and a member
    without ranges offers no endpoints (reason ``no-ranges``). With neither, a cluster
    may advertise any address the API server accepts. ``managers`` and
    ``ignored_managers`` are ``fnmatch`` patterns matched against a slice's managed-by
    label ("" when it has none)."""

    cidrs: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)
    managers: tuple[str, ...] = ("*",)
    ignored_managers: tuple[str, ...] = DEFAULT_IGNORED_MANAGERS
    member_cidrs: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)

    @property
    def ranges_in_use(self) -> bool:
        """Whether every member must have ranges (``member_cidrs`` is set)."""
        return bool(self.member_cidrs)

    def for_member(self, context: str, cluster_id: str) -> EndpointPolicy:
        """The policy for the member configured as ``context``, whose cluster id is now
        ``cluster_id`` (pass that id to `check_slice`): its ranges are those of its
        context, whatever id it publishes. Without ``member_cidrs``, ``self``."""
        if not self.member_cidrs:
            return self
        ranges = self.member_cidrs.get(context)
        return replace(self, cidrs={} if ranges is None else {cluster_id: ranges})

    def for_clusters(self, contexts: Mapping[str, str]) -> EndpointPolicy:
        """The policy for the members whose current cluster ids are the keys of
        ``contexts`` (``{cluster id: context}``, ids unique): ``cidrs`` keyed by those
        ids, each with the ranges of its member's context, whatever id the member
        publishes. Without ``member_cidrs``, ``self``."""
        if not self.member_cidrs:
            return self
        cidrs = {
            cid: self.member_cidrs[ctx] for cid, ctx in contexts.items() if ctx in self.member_cidrs
        }
        return replace(self, cidrs=cidrs)

    def describe(self) -> dict[str, Any]:
        """The policy for the start-up log line (JSON-friendly)."""
        return {
            "member_cidrs": {c: [str(n) for n in r] for c, r in self.member_cidrs.items()},
            "cidrs_by_cluster_id": {c: [str(n) for n in r] for c, r in self.cidrs.items()},
            "ranges_required": self.ranges_in_use,
            "source_slice_managers": list(self.managers),
            "ignored_slice_managers": list(self.ignored_managers),
            "metadata_addresses_denied": sorted(str(a) for a in METADATA_ADDRESSES),
        }

    def counts(self, manager: str) -> bool:
        """Whether a source slice with this managed-by value is a source of endpoints."""
        if manager in CONTROLLER_NAMES:
            return False
        return _matches(manager, self.managers) and not _matches(manager, self.ignored_managers)


@dataclass(frozen=True)
class DroppedEndpoint:
    """One endpoint left out of a source slice, and why (for logs, metrics and Events)."""

    cluster: str
    slice: str
    addresses: tuple[str, ...]
    # short, for a metric label: "invalid", "metadata-address", "outside-cidrs",
    # "fqdn-not-allowed", "no-ranges"
    reason: str
    detail: str  # for humans

    def __str__(self) -> str:
        if self.addresses and self.addresses[0] in self.detail:
            return self.detail
        return f"{','.join(self.addresses) or '<no address>'}: {self.detail}"


def check_slice(
    cluster: str, source: Obj, policy: EndpointPolicy
) -> tuple[dict[str, Any] | None, list[DroppedEndpoint]]:
    """``(kept, dropped)`` for one source EndpointSlice of ``cluster``.

    ``kept`` is the slice with only its trusted endpoints (a shallow copy; the input is
    not changed), or None when the slice does not count at all (its manager is not a
    source, or its addressType is unknown): such a slice is not reported as dropped
    endpoints. ``dropped`` lists every endpoint left out of a counted slice. Never raises.
    """
    meta = source.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    labels = meta.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    manager = labels.get(ENDPOINTSLICE_MANAGED_BY)
    if not policy.counts(manager if isinstance(manager, str) else ""):
        return None, []
    address_type = source.get("addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        return None, []
    name = str(meta.get("name", ""))
    cidrs = policy.cidrs.get(cluster)
    unranged = cidrs is None and policy.ranges_in_use
    kept: list[Any] = []
    dropped: list[DroppedEndpoint] = []
    raw = source.get("endpoints")
    for ep in raw if isinstance(raw, list) else []:
        problem = (
            (
                "no-ranges",
                f'member "{cluster}" has no --member-cidrs entry while ranges are in use, '
                "so it offers no endpoints",
            )
            if unranged
            else _endpoint_problem(ep, address_type, cidrs)
        )
        if problem is None:
            kept.append(ep)
            continue
        addresses = ep.get("addresses") if isinstance(ep, Mapping) else None
        dropped.append(
            DroppedEndpoint(
                cluster=cluster,
                slice=name,
                addresses=tuple(str(a) for a in addresses or ())
                if isinstance(addresses, list)
                else (),
                reason=problem[0],
                detail=problem[1],
            )
        )
    return {**source, "endpoints": kept}, dropped


def filter_slices(
    cluster: str, sources: Iterable[Obj], policy: EndpointPolicy
) -> tuple[list[dict[str, Any]], list[DroppedEndpoint]]:
    """`check_slice` over several slices of one cluster: the kept slices (those that
    count, with their trusted endpoints) and every dropped endpoint."""
    kept: list[dict[str, Any]] = []
    dropped: list[DroppedEndpoint] = []
    for source in sources:
        one, lost = check_slice(cluster, source, policy)
        if one is not None:
            kept.append(one)
        dropped.extend(lost)
    return kept, dropped


def address_problem(
    address: object, address_type: str, cidrs: Sequence[Network] | None = None
) -> tuple[str, str] | None:
    """``(reason, detail)`` when one address may not be imported, else None."""
    if not isinstance(address, str):
        return "invalid", f"address {address!r} is not a string"
    if address_type == "FQDN":
        if cidrs is not None:
            return "fqdn-not-allowed", "FQDN endpoints are not allowed where --member-cidrs is set"
        name = address[:-1] if address.endswith(".") else address
        if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name) or "." not in name:
            return "invalid", f"{address!r} is not a fully qualified domain name"
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid", f"{address!r} is not an IP address"
    family = "IPv4" if ip.version == 4 else "IPv6"
    if family != address_type:
        return "invalid", f"{address} is not an {address_type} address"
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip.scope_id):
        return "invalid", f"{address} is not a plain IPv6 address"
    for test, what in (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
    ):
        if test:
            return "invalid", f"{address} is a {what} address"
    if ip in METADATA_ADDRESSES:
        return "metadata-address", f"{address} is a cloud instance metadata address"
    if cidrs is not None and not any(ip in net for net in cidrs if net.version == ip.version):
        allowed = ", ".join(str(n) for n in cidrs) or "none"
        return "outside-cidrs", f"{address} is outside the member's ranges ({allowed})"
    return None


def _endpoint_problem(
    ep: object, address_type: str, cidrs: Sequence[Network] | None
) -> tuple[str, str] | None:
    if not isinstance(ep, Mapping):
        return "invalid", "endpoint is not an object"
    addresses = ep.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        return "invalid", "endpoint has no addresses"
    if len(addresses) > MAX_ADDRESSES:
        return "invalid", f"endpoint has {len(addresses)} addresses (at most {MAX_ADDRESSES})"
    for address in addresses:
        problem = address_problem(address, address_type, cidrs)
        if problem is not None:
            return problem
    hostname = ep.get("hostname")
    if hostname is not None and (
        not isinstance(hostname, str)
        or len(hostname) > 63
        or not _DNS1123_LABEL.fullmatch(hostname)
    ):
        return "invalid", f"hostname {hostname!r} is not a DNS-1123 label"
    return None


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def parse_member_cidrs(items: Iterable[str]) -> dict[str, tuple[Network, ...]]:
    """``--member-cidrs`` values as ``{name: ranges}`` (a name is a member context or
    an operator-configured cluster id: `bind_member_cidrs`).

    Each item holds one or more ``NAME=CIDR[,CIDR...]`` entries separated by spaces
    or semicolons (so one environment variable can carry them all); a name given
    twice gets the union. Raises ``ValueError`` naming the bad entry.
    """
    out: dict[str, tuple[Network, ...]] = {}
    for item in items:
        for entry in re.split(r"[\s;]+", item.strip()):
            if not entry:
                continue
            cluster, sep, ranges = entry.partition("=")
            if not sep or not cluster or not ranges:
                raise ValueError(f"--member-cidrs {entry!r} is not CONTEXT=CIDR[,CIDR]")
            nets: list[Network] = list(out.get(cluster, ()))
            for text in ranges.split(","):
                try:
                    nets.append(ipaddress.ip_network(text.strip(), strict=True))
                except ValueError as e:
                    raise ValueError(f"--member-cidrs {entry!r}: {e}") from None
            out[cluster] = tuple(nets)
    return out


def bind_member_cidrs(
    by_name: Mapping[str, tuple[Network, ...]],
    contexts: Iterable[str],
    configured_ids: Mapping[str, str],
) -> dict[str, tuple[Network, ...]]:
    """``--member-cidrs`` entries (`parse_member_cidrs`) bound to member contexts.

    A name is a member context, or a cluster id the operator gave a member with
    ``--cluster-id CONTEXT=ID`` (``configured_ids``: ``{context: id}``). A cluster id
    a member publishes in its own ClusterProperty never selects ranges: that member
    would choose its own. Raises ``ValueError`` for a name that is neither (a typo must
    not switch the check off) or that names two members."""
    members = list(contexts)
    by_id: dict[str, set[str]] = {}
    for ctx, cid in configured_ids.items():
        if ctx in members:
            by_id.setdefault(cid, set()).add(ctx)
    out: dict[str, tuple[Network, ...]] = {}
    for name, ranges in by_name.items():
        targets = ({name} if name in members else set()) | by_id.get(name, set())
        if not targets:
            raise ValueError(
                f"--member-cidrs names {name!r}, which is neither a member context "
                f"({', '.join(members)}) nor a cluster id set with --cluster-id CONTEXT=ID "
                "(an id a member publishes in its ClusterProperty cannot select ranges)"
            )
        if len(targets) > 1:
            raise ValueError(
                f"--member-cidrs {name!r} names more than one member: {', '.join(sorted(targets))}"
            )
        (ctx,) = targets
        out[ctx] = out.get(ctx, ()) + tuple(ranges)
    return out


# --- exported metadata -------------------------------------------------------------------


def metadata_problems(
    labels: object, annotations: object, allowed: Sequence[str] | None = None
) -> list[str]:
    """Why a ServiceExport's ``exportedLabels``/``exportedAnnotations`` cannot be copied to
    ServiceImports, one sentence per problem naming the key; empty when they can.
    ``allowed``: when given, ``fnmatch`` patterns one of which every key must match
    (``mcs run --exported-metadata-allow``)."""
    problems: list[str] = []
    total = 0
    for what, value in (("exportedLabels", labels), ("exportedAnnotations", annotations)):
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.append(f"{what} is not a map of strings")
            continue
        size = 0
        for key, val in value.items():
            if not isinstance(key, str) or not isinstance(val, str):
                problems.append(f"{what} {key!r}: keys and values must be strings")
                continue
            size += len(key.encode()) + len(val.encode())
            problem = _key_problem(key if what == "exportedLabels" else key.lower())
            if (
                problem is None
                and allowed is not None
                and not any(fnmatch.fnmatchcase(key, p) for p in allowed)
            ):
                problem = (
                    "not allowed by this clusterset's --exported-metadata-allow "
                    f"({', '.join(allowed) or 'nothing'})"
                )
            if problem is None and what == "exportedLabels":
                problem = _label_value_problem(val)
            if problem is not None:
                problems.append(f'{what} key "{key}": {problem}')
        if what == "exportedAnnotations" and size > TOTAL_ANNOTATION_SIZE:
            problems.append(
                f"{what} total {size} bytes, more than the API's {TOTAL_ANNOTATION_SIZE}"
            )
        total += size
    if total > MAX_EXPORTED_METADATA:
        problems.append(
            f"exported labels and annotations total {total} bytes, "
            f"more than the {MAX_EXPORTED_METADATA} mcs copies to every member"
        )
    return problems


def _key_problem(key: str) -> str | None:
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix:
            return "prefix part must be non-empty"
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            return "prefix part must be a lowercase DNS-1123 subdomain of at most 253 characters"
        if any(prefix == d or prefix.endswith("." + d) for d in RESERVED_DOMAINS):
            return (
                f'prefix "{prefix}" is reserved for Kubernetes '
                "(kubernetes.io and k8s.io, subdomains included) and is never exported"
            )
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return None


def _label_value_problem(value: str) -> str | None:
    if len(value) > 63:
        return "label value must be no more than 63 characters"
    if not _LABEL_VALUE.fullmatch(value):
        return (
            f'label value "{value}" must be empty or consist of alphanumeric characters, '
            "'-', '_' or '.', and start and end with an alphanumeric character"
        )
    return None
