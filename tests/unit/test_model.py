"""Unit tests for mcs.core.model: reading API objects into records, and the API forms out."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from mcs.core.model import (
    CONDITION_MESSAGE_MAX,
    Condition,
    ExportRecord,
    ImportSpec,
    InvalidExport,
    Port,
    format_time,
    parse_time,
    record_from_objects,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# A ServiceExport and Service as `kubectl get -o json` shows them, shaped after the
# conformance fixture `hello` (mcs-api conformance/k8s_objects.go).
EXPORT: dict[str, Any] = {
    "apiVersion": "multicluster.x-k8s.io/v1beta1",
    "kind": "ServiceExport",
    "metadata": {
        "name": "hello",
        "namespace": "demo",
        "uid": "0b9c4a53-5c1e-4f0e-9a51-2f7d1c1a8c11",
        "resourceVersion": "1042",
        "generation": 1,
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": {"dummy-svcexport": "true"},
        "annotations": {"dummy-svcexport": "true"},
    },
    "spec": {
        "exportedLabels": {"team": "blue"},
        "exportedAnnotations": {"example.com/owner": "blue@example.com"},
    },
}

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "hello",
        "namespace": "demo",
        "uid": "5d1f2a8e-8f6b-4c1e-b7a2-3c9e0d4f1b22",
        "resourceVersion": "1001",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"dummy-svc": "true"},
        "annotations": {"dummy-svc": "true"},
    },
    "spec": {
        "selector": {"app": "hello"},
        "type": "ClusterIP",
        "clusterIP": "10.96.12.34",
        "clusterIPs": ["10.96.12.34"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "PreferDualStack",
        "internalTrafficPolicy": "Cluster",
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
        "ports": [
            {"name": "tcp", "protocol": "TCP", "port": 42, "targetPort": 42},
            {"name": "udp", "protocol": "UDP", "port": 42, "targetPort": 42},
        ],
    },
    "status": {"loadBalancer": {}},
}


def service_with(**spec: Any) -> dict[str, Any]:
    """SERVICE with some spec fields replaced (a value of None removes the field)."""
    service = copy.deepcopy(SERVICE)
    for key, value in spec.items():
        if value is None:
            service["spec"].pop(key, None)
        else:
            service["spec"][key] = value
    return service


HELLO = ExportRecord(
    cluster="c1",
    created=T0,
    ports=(Port(name="tcp", port=42), Port(name="udp", protocol="UDP", port=42)),
    type="ClusterSetIP",
    session_affinity="ClientIP",
    session_affinity_timeout=10,
    ip_families=("IPv4",),
    internal_traffic_policy="Cluster",
    exported_labels={"team": "blue"},
    exported_annotations={"example.com/owner": "blue@example.com"},
)


# --- record_from_objects -------------------------------------------------------------


def test_clusterip_service_becomes_a_clustersetip_record() -> None:
    """Every field the merge needs is read; targetPort and metadata are not."""
    assert record_from_objects("c1", EXPORT, SERVICE) == HELLO


def test_headless_service_becomes_a_headless_record() -> None:
    """clusterIP "None" is what makes a Service headless."""
    service = service_with(
        clusterIP="None",
        clusterIPs=["None"],
        sessionAffinity="None",
        sessionAffinityConfig=None,
        trafficDistribution="PreferClose",
    )
    assert record_from_objects("c1", EXPORT, service) == HELLO.model_copy(
        update={
            "type": "Headless",
            "session_affinity": "None",
            "session_affinity_timeout": None,
            "traffic_distribution": "PreferClose",
        }
    )


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_nodeport_and_loadbalancer_export_like_clusterip(service_type: str) -> None:
    """NodePort and LoadBalancer Services give ClusterSetIP; nodePort is dropped."""
    service = service_with(
        type=service_type,
        ports=[
            {"name": "tcp", "protocol": "TCP", "port": 42, "targetPort": 8042, "nodePort": 30042}
        ],
    )
    record = record_from_objects("c1", EXPORT, service)
    assert isinstance(record, ExportRecord)
    assert record.type == "ClusterSetIP"
    assert record.ports == (Port(name="tcp", protocol="TCP", port=42),)


def test_externalname_service_is_invalid() -> None:
    """ExternalName cannot be exported (KEP-1645, "Service Types")."""
    service = service_with(
        type="ExternalName",
        externalName="hello.example.com",
        clusterIP=None,
        clusterIPs=None,
        ipFamilies=None,
        ipFamilyPolicy=None,
        ports=None,
    )
    assert record_from_objects("c1", EXPORT, service) == InvalidExport(
        cluster="c1",
        reason="InvalidServiceType",
        message=(
            'Service "demo/hello" in cluster "c1" has type ExternalName, which cannot be '
            "exported; create an ExternalName Service in each cluster instead."
        ),
    )


def test_missing_service_is_invalid() -> None:
    """An export without its Service says which Service is missing, and where."""
    assert record_from_objects("c1", EXPORT, None) == InvalidExport(
        cluster="c1",
        reason="NoService",
        message=(
            'Service "demo/hello" not found in cluster "c1"; '
            "create it or delete this ServiceExport."
        ),
    )


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        pytest.param({"name": "web", "protocol": "TCP", "port": 80}, None, id="absent"),
        pytest.param(
            {"name": "web", "protocol": "TCP", "port": 80, "appProtocol": "http"}, "http", id="set"
        ),
        pytest.param(
            {"name": "web", "protocol": "TCP", "port": 80, "appProtocol": ""}, None, id="empty"
        ),
    ],
)
def test_app_protocol_is_none_unless_set(port: dict[str, Any], expected: str | None) -> None:
    """appProtocol is copied only when the Service has one; "" never survives."""
    record = record_from_objects("c1", EXPORT, service_with(ports=[port]))
    assert isinstance(record, ExportRecord)
    assert record.ports == (Port(name="web", port=80, app_protocol=expected),)


def test_protocol_is_copied_verbatim() -> None:
    """SCTP stays SCTP; the CRD no longer defaults protocol, so we never rewrite it."""
    service = service_with(ports=[{"name": "stcp", "protocol": "SCTP", "port": 142}])
    record = record_from_objects("c1", EXPORT, service)
    assert isinstance(record, ExportRecord)
    assert record.ports == (Port(name="stcp", protocol="SCTP", port=142),)


def test_labels_and_annotations_come_only_from_the_export_spec() -> None:
    """Metadata labels/annotations of the Service or ServiceExport are never exported."""
    record = record_from_objects("c1", EXPORT, SERVICE)
    assert isinstance(record, ExportRecord)
    assert record.exported_labels == {"team": "blue"}
    assert record.exported_annotations == {"example.com/owner": "blue@example.com"}


def test_export_without_spec_exports_no_labels() -> None:
    """An export from the old CRD (no spec at all) exports nothing besides the Service."""
    export = copy.deepcopy(EXPORT)
    del export["spec"]
    record = record_from_objects("c1", export, SERVICE)
    assert isinstance(record, ExportRecord)
    assert record.exported_labels == {}
    assert record.exported_annotations == {}


def test_optional_service_fields_stay_absent() -> None:
    """ITP, TD, affinity config and families are None/empty when the Service lacks them."""
    service = service_with(
        internalTrafficPolicy=None,
        sessionAffinity=None,
        sessionAffinityConfig=None,
        ipFamilies=None,
    )
    record = record_from_objects("c1", EXPORT, service)
    assert isinstance(record, ExportRecord)
    assert record.internal_traffic_policy is None
    assert record.traffic_distribution is None
    assert record.session_affinity == "None"
    assert record.session_affinity_timeout is None
    assert record.ip_families == ()


def test_export_creation_timestamp_decides_age() -> None:
    """The record's age is the ServiceExport's creationTimestamp, not the Service's."""
    export = copy.deepcopy(EXPORT)
    export["metadata"]["creationTimestamp"] = "2026-03-04T05:06:07+02:00"
    record = record_from_objects("c1", export, SERVICE)
    assert isinstance(record, ExportRecord)
    assert record.created == datetime(2026, 3, 4, 3, 6, 7, tzinfo=UTC)
    assert record.created.tzinfo is UTC


# --- times ---------------------------------------------------------------------------


def test_time_round_trip() -> None:
    """API timestamps parse to aware UTC and render back identically."""
    assert parse_time("2026-01-02T03:04:05Z") == T0
    assert format_time(T0) == "2026-01-02T03:04:05Z"
    assert format_time(T0.astimezone(timezone(timedelta(hours=-5)))) == "2026-01-02T03:04:05Z"


def test_naive_times_are_rejected() -> None:
    """A naive datetime would compare wrongly or crash the ordering; refuse it early."""
    with pytest.raises(ValueError):
        parse_time("2026-01-02T03:04:05")
    with pytest.raises(ValidationError):
        ExportRecord.model_validate({**HELLO.model_dump(), "created": datetime(2026, 1, 2)})


def test_record_created_is_normalised_to_utc() -> None:
    """Records from clusters in any timezone order on the same clock."""
    record = ExportRecord.model_validate(
        {**HELLO.model_dump(), "created": T0.astimezone(timezone(timedelta(hours=9)))}
    )
    assert record.created == T0
    assert record.created.tzinfo is UTC
    assert record.priority() == (T0, "c1")


# --- Port and ImportSpec -------------------------------------------------------------


def test_port_to_api_omits_unset_fields() -> None:
    """Unnamed ports have no name key; appProtocol appears only when set."""
    assert Port(port=80).to_api() == {"protocol": "TCP", "port": 80}
    assert Port(name="", port=80, app_protocol="").to_api() == {"protocol": "TCP", "port": 80}
    assert Port(name="web", protocol="UDP", port=53, app_protocol="dns").to_api() == {
        "name": "web",
        "protocol": "UDP",
        "port": 53,
        "appProtocol": "dns",
    }


FULL_SPEC = ImportSpec(
    type="ClusterSetIP",
    ports=(Port(name="tcp", port=42), Port(name="udp", protocol="UDP", port=42)),
    session_affinity="ClientIP",
    session_affinity_timeout=10,
    ip_families=("IPv4", "IPv6"),
    internal_traffic_policy="Cluster",
    traffic_distribution="PreferClose",
    labels={"team": "blue"},
    annotations={},
)


def test_clustersetip_spec_to_api() -> None:
    """Every set field appears, in the CRD's spelling; ips only when given."""
    expected: dict[str, Any] = {
        "ports": [
            {"name": "tcp", "protocol": "TCP", "port": 42},
            {"name": "udp", "protocol": "UDP", "port": 42},
        ],
        "type": "ClusterSetIP",
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
        "ipFamilies": ["IPv4", "IPv6"],
        "internalTrafficPolicy": "Cluster",
        "trafficDistribution": "PreferClose",
    }
    assert FULL_SPEC.to_api() == expected
    assert FULL_SPEC.to_api(ips=("10.96.0.10", "fd00::10")) == {
        **expected,
        "ips": ["10.96.0.10", "fd00::10"],
    }


def test_headless_spec_to_api_has_no_ips_and_no_affinity() -> None:
    """Headless imports never carry ips or session affinity, but keep ipFamilies."""
    headless = FULL_SPEC.model_copy(update={"type": "Headless"})
    assert headless.to_api(ips=("10.96.0.10",)) == {
        "ports": [
            {"name": "tcp", "protocol": "TCP", "port": 42},
            {"name": "udp", "protocol": "UDP", "port": 42},
        ],
        "type": "Headless",
        "ipFamilies": ["IPv4", "IPv6"],
        "internalTrafficPolicy": "Cluster",
        "trafficDistribution": "PreferClose",
    }


def test_minimal_spec_to_api_always_has_ports() -> None:
    """ports and type are required by the CRD, so an empty port list is sent as []."""
    spec = ImportSpec(
        type="Headless",
        ports=(),
        session_affinity=None,
        session_affinity_timeout=None,
        ip_families=(),
        internal_traffic_policy=None,
        traffic_distribution=None,
        labels={},
        annotations={},
    )
    assert spec.to_api() == {"ports": [], "type": "Headless"}


# --- Condition -----------------------------------------------------------------------


def test_condition_to_api() -> None:
    """to_api uses camelCase and second resolution."""
    condition = Condition(
        type="Conflict",
        status="True",
        reason="PortConflict,TypeConflict",
        message="m",
        last_transition_time=T0 + timedelta(microseconds=999),
        observed_generation=3,
    )
    api = condition.to_api()
    assert api == {
        "type": "Conflict",
        "status": "True",
        "reason": "PortConflict,TypeConflict",
        "message": "m",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 3,
    }
    assert (
        "observedGeneration"
        not in condition.model_copy(update={"observed_generation": None}).to_api()
    )


@pytest.mark.parametrize(
    "reason",
    ["", "Port Conflict", "PortConflict,", "1Conflict", "Port-Conflict", "A" * 1025],
)
def test_condition_rejects_reasons_the_crd_rejects(reason: str) -> None:
    """A reason outside the CRD's pattern or length is a programming error."""
    with pytest.raises(ValidationError):
        Condition(type="Ready", status="False", reason=reason, message="", last_transition_time=T0)


@pytest.mark.parametrize("reason", ["A", "Failed", "PortConflict,TypeConflict", "a_b:c"])
def test_condition_accepts_reasons_the_crd_accepts(reason: str) -> None:
    """Commas, colons and underscores are allowed inside a reason."""
    Condition(type="Ready", status="False", reason=reason, message="", last_transition_time=T0)


def test_condition_rejects_bad_type_status_and_generation() -> None:
    """Types follow the CRD pattern, status is an enum, observedGeneration is >= 0."""
    base = {
        "type": "Ready",
        "status": "True",
        "reason": "R",
        "message": "",
        "last_transition_time": T0,
    }
    for change in ({"type": "Not a type"}, {"status": "Maybe"}, {"observed_generation": -1}):
        with pytest.raises(ValidationError):
            Condition.model_validate({**base, **change})


def test_long_condition_messages_are_truncated_to_the_crd_limit() -> None:
    """Messages quote user data (annotations), so they are cut, never rejected."""
    message = "é" * (CONDITION_MESSAGE_MAX + 10)
    condition = Condition(
        type="Conflict", status="True", reason="R", message=message, last_transition_time=T0
    )
    assert len(condition.message) == CONDITION_MESSAGE_MAX
    assert condition.message.endswith("(truncated)")
    assert condition.message.startswith("é" * 100)
    exact = "x" * CONDITION_MESSAGE_MAX
    assert (
        Condition(
            type="Conflict", status="True", reason="R", message=exact, last_transition_time=T0
        ).message
        == exact
    )
