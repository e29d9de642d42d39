"""The records the merge works on, and their Kubernetes API forms.

This module owns the neutral data that flows through `mcs`: one `ExportRecord` per
cluster that validly exports a service, the `ImportSpec` the merge decides, and the
`Condition` written on ServiceExports. It never talks to an API server and never
reads a clock; everything here is a pure function of its arguments.

Contract with the rest of the controller:

* API objects come in as plain dicts, exactly as the API returns them (camelCase
  JSON, for example from ``kubectl get -o json`` or a custom-objects call), and go
  out as plain dicts through the ``to_api`` methods.
* `record_from_objects` is the only place that reads a ServiceExport or a
  Service. It returns an `ExportRecord` when the pair can be exported and an
  `InvalidExport` (reason ``NoService``, ``InvalidServiceType``,
  ``InvalidExportedMetadata`` when its exported labels or annotations would be
  refused by the API server or are reserved: `mcs.core.trust.metadata_problems`, or
  ``MalformedObject`` when a field the merge reads is missing or of the wrong shape,
  which only a forged or broken API server can return) when not. It never raises
  for what an API server sends: a member controls its own API server.
* Exported labels and annotations come only from the ServiceExport's
  ``spec.exportedLabels`` / ``spec.exportedAnnotations``, never from the metadata
  of either object (KEP-1645, "Exporting Services").
* Fields are copied as the Service has them: ``protocol`` verbatim, ``appProtocol``
  only when set (``None``, never ``""``), ``internalTrafficPolicy`` and
  ``trafficDistribution`` absent when absent.
* Times are timezone-aware UTC. A naive datetime is rejected rather than guessed.
  Condition times have second resolution, like ``metav1.Time``.
* A `Condition` always satisfies the CRD's condition schema: a bad type or reason
  raises ``ValidationError`` (a programming error), and a message longer than the
  schema allows is truncated, not rejected, because messages quote user data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcs.core.trust import metadata_problems

ServiceType = Literal["ClusterSetIP", "Headless"]

# From the metav1.Condition schema shared by the ServiceExport and ServiceImport CRDs.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_MESSAGE_MAX = 32768
_TRUNCATED = " … (truncated)"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 API timestamp such as ``2026-01-02T03:04:05Z`` into aware UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """Render an aware datetime the way the API does: ``2026-01-02T03:04:05Z``."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC)


class Port(BaseModel):
    """One port of an exported Service or of a ServiceImport.

    Only the external properties take part: targetPort and nodePort are local to a
    cluster and are dropped.
    """

    model_config = _FROZEN

    name: str = ""
    protocol: str = "TCP"
    port: int
    app_protocol: str | None = None

    @field_validator("app_protocol")
    @classmethod
    def _no_empty_app_protocol(cls, value: str | None) -> str | None:
        return value or None

    def to_api(self) -> dict[str, Any]:
        """The ServicePort dict: ``name`` omitted when empty, ``appProtocol`` when unset."""
        api: dict[str, Any] = {"protocol": self.protocol, "port": self.port}
        if self.name:
            api["name"] = self.name
        if self.app_protocol is not None:
            api["appProtocol"] = self.app_protocol
        return api


class ExportRecord(BaseModel):
    """What one cluster's valid export of a service contributes to the merge."""

    model_config = _FROZEN

    cluster: str
    created: datetime
    ports: tuple[Port, ...]
    type: ServiceType
    session_affinity: str = "None"
    session_affinity_timeout: int | None = None
    ip_families: tuple[str, ...] = ()
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    exported_labels: dict[str, str] = Field(default_factory=dict)
    exported_annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("created")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    def priority(self) -> tuple[datetime, str]:
        """Sort key: oldest export first, ties broken by cluster id.

        Python compares strings by code point, which is the byte-wise order of
        their UTF-8 encoding, so this matches Cilium's ``strings.Compare``.
        """
        return (self.created, self.cluster)


class InvalidExport(BaseModel):
    """A ServiceExport that takes no part in the merge, and why."""

    model_config = _FROZEN

    cluster: str
    reason: Literal[
        "NoService",
        "InvalidServiceType",
        "InvalidExportedMetadata",
        "MalformedObject",
        "NamespaceExcluded",
        "NamespaceNotGlobal",
    ]
    message: str


def record_from_objects(
    cluster: str,
    export: Mapping[str, Any],
    service: Mapping[str, Any] | None,
    allowed_metadata: Sequence[str] | None = None,
) -> ExportRecord | InvalidExport:
    """Build the merge record for one cluster's ServiceExport and its Service.

    `service` is the Service with the export's namespace and name in the same
    cluster, or ``None`` when there is none. Never raises for what an API server may
    send: an object a real API server could not have returned (no creationTimestamp,
    a port without a number; a member's own API server can return anything) is an
    `InvalidExport` with reason ``MalformedObject`` naming the field.
    """
    meta = _map(export.get("metadata"))
    key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if service is None:
        return InvalidExport(
            cluster=cluster,
            reason="NoService",
            message=(
                f'Service "{key}" not found in cluster "{cluster}"; '
                "create it or delete this ServiceExport."
            ),
        )
    spec = _map(service.get("spec"))
    if spec.get("type") == "ExternalName":
        return InvalidExport(
            cluster=cluster,
            reason="InvalidServiceType",
            message=(
                f'Service "{key}" in cluster "{cluster}" has type ExternalName, which cannot '
                "be exported; create an ExternalName Service in each cluster instead."
            ),
        )
    export_spec = _map(export.get("spec"))
    problems = metadata_problems(
        export_spec.get("exportedLabels"), export_spec.get("exportedAnnotations"), allowed_metadata
    )
    if problems:
        return InvalidExport(
            cluster=cluster,
            reason="InvalidExportedMetadata",
            message=(
                f'ServiceExport "{key}" in cluster "{cluster}" cannot be imported: '
                + "; ".join(problems)
                + ". Fix spec.exportedLabels/spec.exportedAnnotations."
            ),
        )
    problem = _malformed(meta, spec)
    if problem is None:
        try:
            return _record(cluster, meta, spec, export_spec)
        except (KeyError, ValueError, TypeError, AttributeError) as e:  # pydantic's too
            problem = f"a field has the wrong type ({type(e).__name__}: {str(e)[:300]})"
    return InvalidExport(
        cluster=cluster,
        reason="MalformedObject",
        message=(
            f'ServiceExport "{key}" in cluster "{cluster}" cannot be imported: {problem}. '
            "A real API server never returns such an object: check that cluster's API "
            "server (or whatever answers for it)."
        ),
    )


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _malformed(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields the merge reads, in words; None when nothing."""
    created = meta.get("creationTimestamp")
    if not isinstance(created, str):
        return "the ServiceExport's metadata.creationTimestamp is missing"
    try:
        parse_time(created)
    except ValueError:
        return f"the ServiceExport's metadata.creationTimestamp {created!r} is not a timestamp"
    ports = spec.get("ports")
    if ports is not None and not isinstance(ports, list):
        return "the Service's spec.ports is not a list"
    for i, p in enumerate(ports or ()):
        if not isinstance(p, Mapping):
            return f"the Service's spec.ports[{i}] is not an object"
        number = p.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            return f"the Service's spec.ports[{i}].port {number!r} is not a port number"
        for field in ("name", "protocol", "appProtocol"):
            if p.get(field) is not None and not isinstance(p.get(field), str):
                return f"the Service's spec.ports[{i}].{field} is not a string"
    families = spec.get("ipFamilies")
    if families is not None and (
        not isinstance(families, list) or not all(isinstance(f, str) for f in families)
    ):
        return "the Service's spec.ipFamilies is not a list of strings"
    return None


def _record(
    cluster: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    export_spec: Mapping[str, Any],
) -> ExportRecord:
    client_ip = _map(_map(spec.get("sessionAffinityConfig")).get("clientIP"))
    return ExportRecord(
        cluster=cluster,
        created=parse_time(meta["creationTimestamp"]),
        ports=tuple(
            Port(
                name=p.get("name", ""),
                protocol=p.get("protocol", "TCP"),
                port=p["port"],
                app_protocol=p.get("appProtocol"),
            )
            for p in spec.get("ports") or ()
        ),
        type="Headless" if spec.get("clusterIP") == "None" else "ClusterSetIP",
        session_affinity=spec.get("sessionAffinity", "None"),
        session_affinity_timeout=client_ip.get("timeoutSeconds"),
        ip_families=tuple(spec.get("ipFamilies") or ()),
        internal_traffic_policy=spec.get("internalTrafficPolicy"),
        traffic_distribution=spec.get("trafficDistribution"),
        exported_labels=dict(export_spec.get("exportedLabels") or {}),
        exported_annotations=dict(export_spec.get("exportedAnnotations") or {}),
    )


class ImportSpec(BaseModel):
    """The ServiceImport spec the merge decides, plus the metadata it carries.

    For a Headless import the merge leaves `session_affinity` and
    `session_affinity_timeout` unset, since the API ignores them there.
    """

    model_config = _FROZEN

    type: ServiceType
    ports: tuple[Port, ...]
    session_affinity: str | None
    session_affinity_timeout: int | None
    ip_families: tuple[str, ...]
    internal_traffic_policy: str | None
    traffic_distribution: str | None
    labels: dict[str, str]
    annotations: dict[str, str]

    def to_api(self, ips: Sequence[str] = ()) -> dict[str, Any]:
        """The ServiceImport ``spec`` dict.

        ``ports`` (possibly empty) and ``type`` are always present, since the CRD
        requires them. ``ips`` appears only for a ClusterSetIP import and only when
        given; session affinity never appears for a Headless import. Everything
        else is omitted when unset.
        """
        api: dict[str, Any] = {"ports": [p.to_api() for p in self.ports], "type": self.type}
        if self.type == "ClusterSetIP":
            if ips:
                api["ips"] = list(ips)
            if self.session_affinity is not None:
                api["sessionAffinity"] = self.session_affinity
            if self.session_affinity_timeout is not None:
                api["sessionAffinityConfig"] = {
                    "clientIP": {"timeoutSeconds": self.session_affinity_timeout}
                }
        if self.ip_families:
            api["ipFamilies"] = list(self.ip_families)
        if self.internal_traffic_policy is not None:
            api["internalTrafficPolicy"] = self.internal_traffic_policy
        if self.traffic_distribution is not None:
            api["trafficDistribution"] = self.traffic_distribution
        return api


class Condition(BaseModel):
    """A ``metav1.Condition`` that the CRD schema will accept."""

    model_config = _FROZEN

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    message: str
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)

    @field_validator("message")
    @classmethod
    def _fit_message(cls, value: str) -> str:
        # Truncate by code point: the schema's maxLength counts characters, so a
        # cut here can never split a UTF-8 sequence.
        if len(value) <= CONDITION_MESSAGE_MAX:
            return value
        return value[: CONDITION_MESSAGE_MAX - len(_TRUNCATED)] + _TRUNCATED

    @field_validator("last_transition_time")
    @classmethod
    def _second_resolution(cls, value: datetime) -> datetime:
        return _utc(value).replace(microsecond=0)

    def to_api(self) -> dict[str, Any]:
        api: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(self.last_transition_time),
        }
        if self.observed_generation is not None:
            api["observedGeneration"] = self.observed_generation
        return api
