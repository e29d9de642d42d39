"""Static checks of the CRDs in crds/ (no cluster needed).

They pin the facts of mcs-api v0.5.0 (ServiceExport, ServiceImport) and of
KEP-2149 (ClusterProperty), and check that every schema is *structural* in the
sense of apiextensions.k8s.io/v1, so that a kube-apiserver accepts it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_FILES = ("serviceexports.yaml", "serviceimports.yaml", "clusterproperties.yaml")

MCS_GROUP = "multicluster.x-k8s.io"
MCS_LABELS = {
    "multicluster.x-k8s.io/release-version": "v0.5.0",
    "multicluster.x-k8s.io/crd-schema-revision": "0",
}
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"

Schema = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((CRD_DIR / name).read_text()))
    assert len(docs) == 1, f"{name}: expected exactly one YAML document"
    doc = docs[0]
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def crds() -> dict[str, dict[str, Any]]:
    return {name: _load(name) for name in CRD_FILES}


@pytest.fixture(scope="module")
def export_crd(crds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return crds["serviceexports.yaml"]


@pytest.fixture(scope="module")
def import_crd(crds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return crds["serviceimports.yaml"]


@pytest.fixture(scope="module")
def property_crd(crds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return crds["clusterproperties.yaml"]


def _version(crd: dict[str, Any], name: str) -> dict[str, Any]:
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == name]
    assert isinstance(v, dict)
    return v


def _schema(crd: dict[str, Any], version: str = "v1beta1") -> Schema:
    s = _version(crd, version)["schema"]["openAPIV3Schema"]
    assert isinstance(s, dict)
    return s


def _at(schema: Schema, path: str) -> Schema:
    """Follow a dotted path of property names."""
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


# --------------------------------------------------------------------------
# Structural-schema validation (the rules the apiserver enforces for
# apiextensions.k8s.io/v1, restricted to the features these CRDs could use).

_SCHEMA_KEYS = {
    "description", "type", "format", "title",
    "properties", "additionalProperties", "items", "required",
    "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minProperties", "maxProperties", "default", "nullable", "example",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-validations",
}  # fmt: skip
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_SCALARS = {"string", "integer", "number", "boolean"}
_FORMATS = {
    "string": {"date-time", "date", "byte", "binary", "password", "uri", "email",
               "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "duration",
               "int-or-string", "quantity"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}  # fmt: skip
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
}  # fmt: skip


def structural_errors(schema: Schema, path: str = "") -> Iterator[str]:
    """Yield every way `schema` is not a valid structural schema."""
    where = path or "<root>"
    if not isinstance(schema, dict):
        yield f"{where}: schema is not a mapping"
        return
    for key in sorted(set(schema) - _SCHEMA_KEYS):
        yield f"{where}: unsupported keyword {key!r}"
    typ = schema.get("type")
    untyped_ok = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if typ is None and not untyped_ok:
        yield f"{where}: missing 'type'"
    elif typ is not None and typ not in _TYPES:
        yield f"{where}: unknown type {typ!r}"
    if "format" in schema and schema["format"] not in _FORMATS.get(typ or "", set()):
        yield f"{where}: format {schema['format']!r} does not fit type {typ!r}"
    if not isinstance(schema.get("description", ""), str):
        yield f"{where}: description is not a string"

    props = schema.get("properties")
    if props is not None:
        if typ != "object":
            yield f"{where}: 'properties' on a non-object"
        if "additionalProperties" in schema:
            yield f"{where}: 'properties' and 'additionalProperties' are exclusive"
        for name, sub in props.items():
            yield from structural_errors(sub, f"{path}.{name}")
    if "additionalProperties" in schema:
        if typ != "object":
            yield f"{where}: 'additionalProperties' on a non-object"
        ap = schema["additionalProperties"]
        if isinstance(ap, dict):
            yield from structural_errors(ap, f"{path}{{*}}")
        elif ap is not False:
            yield f"{where}: additionalProperties must be a schema or false"
    for name in schema.get("required", []):
        if name not in (props or {}):
            yield f"{where}: required {name!r} is not a property"

    if typ == "array" and "items" not in schema:
        yield f"{where}: array without 'items'"
    if "items" in schema:
        if typ != "array":
            yield f"{where}: 'items' on a non-array"
        if not isinstance(schema["items"], dict):
            yield f"{where}: 'items' must be a single schema"
        else:
            yield from structural_errors(schema["items"], f"{path}[]")
    for key in ("minItems", "maxItems"):
        if key in schema and typ != "array":
            yield f"{where}: {key!r} on a non-array"
    for key in ("minLength", "maxLength", "pattern"):
        if key in schema and typ != "string":
            yield f"{where}: {key!r} on a non-string"
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            yield f"{where}: pattern does not compile: {exc}"
    for lo, hi in (("minLength", "maxLength"), ("minItems", "maxItems")):
        if lo in schema and hi in schema and schema[lo] > schema[hi]:
            yield f"{where}: {lo} > {hi}"
    if "enum" in schema:
        for value in schema["enum"]:
            if typ in _PY_TYPES and not isinstance(value, _PY_TYPES[typ]):
                yield f"{where}: enum value {value!r} is not a {typ}"

    list_type = schema.get("x-kubernetes-list-type")
    if list_type is not None:
        if typ != "array":
            yield f"{where}: x-kubernetes-list-type on a non-array"
        if list_type not in ("atomic", "set", "map"):
            yield f"{where}: bad x-kubernetes-list-type {list_type!r}"
    raw_items = schema.get("items")
    items: Schema = raw_items if isinstance(raw_items, dict) else {}
    keys = schema.get("x-kubernetes-list-map-keys")
    if list_type == "map":
        if items.get("type") != "object":
            yield f"{where}: list-type map needs object items"
        if not keys:
            yield f"{where}: list-type map needs x-kubernetes-list-map-keys"
        for key in keys or []:
            key_schema = items.get("properties", {}).get(key)
            if key_schema is None:
                yield f"{where}: list-map key {key!r} is not an item property"
            elif key_schema.get("type") not in _SCALARS:
                yield f"{where}: list-map key {key!r} is not a scalar"
            elif key not in items.get("required", []) and "default" not in key_schema:
                yield f"{where}: list-map key {key!r} must be required or defaulted"
    elif keys is not None:
        yield f"{where}: x-kubernetes-list-map-keys without list-type map"
    if list_type == "set" and items.get("type") not in _SCALARS:
        yield f"{where}: list-type set needs scalar items"


def root_errors(schema: Schema) -> Iterator[str]:
    """Rules that apply only to the root of a CRD schema."""
    if schema.get("type") != "object":
        yield "root: type must be object"
    for key in ("nullable", "default", "x-kubernetes-preserve-unknown-fields"):
        if key in schema:
            yield f"root: {key!r} is not allowed here"
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None and set(metadata) - {"type", "description"}:
        yield "root: metadata may only say type: object"
    for name in ("apiVersion", "kind"):
        sub = schema.get("properties", {}).get(name)
        if sub is not None and sub.get("type") != "string":
            yield f"root: {name} must be a string"
    yield from structural_errors(schema)


def _all_schemas() -> list[tuple[str, str, Schema]]:
    out = []
    for name in CRD_FILES:
        crd = _load(name)
        for v in crd["spec"]["versions"]:
            out.append((name, v["name"], v["schema"]["openAPIV3Schema"]))
    return out


_SCHEMA_IDS = [f"{name.removesuffix('.yaml')}-{version}" for name, version, _ in _all_schemas()]


@pytest.mark.parametrize(("name", "version", "schema"), _all_schemas(), ids=_SCHEMA_IDS)
def test_schema_is_structural(name: str, version: str, schema: Schema) -> None:
    assert list(root_errors(schema)) == []


@pytest.mark.parametrize(("name", "version", "schema"), _all_schemas(), ids=_SCHEMA_IDS)
def test_every_field_is_described(name: str, version: str, schema: Schema) -> None:
    missing = []

    def walk(node: Schema, path: str) -> None:
        for prop, sub in node.get("properties", {}).items():
            if prop != "metadata" and not sub.get("description", "").strip():
                missing.append(f"{path}.{prop}")
            walk(sub, f"{path}.{prop}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    assert schema.get("description", "").strip()
    walk(schema, "")
    assert missing == []


def test_validator_catches_mistakes() -> None:
    """The structural checker itself must not be vacuous."""
    good = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert list(root_errors(good)) == []
    bad_cases: list[Schema] = [
        {"type": "object", "properties": {"a": {"description": "no type"}}},
        {"type": "object", "properties": {"a": {"type": "array"}}},
        {"type": "string", "properties": {"a": {"type": "string"}}},
        {"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/x"}}},
        {"type": "object", "properties": {"a": {"type": "string", "enum": [True]}}},
        {
            "type": "object",
            "properties": {
                "a": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["k"],  # k is not required
                }
            },
        },
    ]
    for case in bad_cases:
        assert list(root_errors(case)), case


# --------------------------------------------------------------------------
# The files themselves.


@pytest.mark.parametrize("name", CRD_FILES)
def test_plain_yaml_without_anchors_or_aliases(name: str) -> None:
    for event in yaml.parse((CRD_DIR / name).read_text()):
        assert not isinstance(event, yaml.AliasEvent), f"{name}: alias at {event.start_mark}"
        assert getattr(event, "anchor", None) is None, f"{name}: anchor at {event.start_mark}"


def test_kustomization_lists_every_crd() -> None:
    kust = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == sorted(CRD_FILES)
    on_disk = {p.name for p in CRD_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(CRD_FILES)


@pytest.mark.parametrize("name", CRD_FILES)
def test_crd_envelope(crds: dict[str, dict[str, Any]], name: str) -> None:
    crd = crds[name]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["names"]["listKind"] == spec["names"]["kind"] + "List"
    assert "conversion" not in spec  # strategy None: the schemas are identical
    assert "preserveUnknownFields" not in spec
    assert "status" not in crd


@pytest.mark.parametrize("name", CRD_FILES)
def test_versions(crds: dict[str, dict[str, Any]], name: str) -> None:
    versions = crds[name]["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1", "v1beta1"]
    assert all(v["served"] is True for v in versions)
    assert [v["name"] for v in versions if v["storage"] is True] == ["v1beta1"]
    assert all(v["storage"] in (True, False) for v in versions)
    # Without a conversion webhook both versions must describe the same objects.
    a, b = (copy.deepcopy(v) for v in versions)
    for v in (a, b):
        del v["name"], v["storage"]
    if name == "clusterproperties.yaml":
        # about-api enables the (empty) status subresource only in v1beta1.
        assert "subresources" not in a
        assert b.pop("subresources") == {"status": {}}
    assert a == b


@pytest.mark.parametrize("name", CRD_FILES)
def test_protected_group_approval(crds: dict[str, dict[str, Any]], name: str) -> None:
    # *.k8s.io / *.kubernetes.io groups need the approval annotation in a v1
    # CRD; any other group is rejected if it carries it. x-k8s.io is not protected.
    crd = crds[name]
    group = crd["spec"]["group"]
    protected = group in ("k8s.io", "kubernetes.io") or group.endswith(
        (".k8s.io", ".kubernetes.io")
    )
    annotations = crd["metadata"].get("annotations", {})
    if protected:
        value = annotations.get(APPROVAL_ANNOTATION, "")
        assert value.startswith("https://"), value
    else:
        assert APPROVAL_ANNOTATION not in annotations


# --------------------------------------------------------------------------
# ServiceExport and ServiceImport (mcs-api v0.5.0).


@pytest.mark.parametrize(
    ("name", "kind", "short_names"),
    [
        ("serviceexports.yaml", "ServiceExport", ["svcex", "svcexport"]),
        ("serviceimports.yaml", "ServiceImport", ["svcim", "svcimport"]),
    ],
)
def test_mcs_names_scope_labels(
    crds: dict[str, dict[str, Any]], name: str, kind: str, short_names: list[str]
) -> None:
    crd = crds[name]
    spec = crd["spec"]
    assert spec["group"] == MCS_GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["plural"] == kind.lower() + "s"
    assert spec["names"]["shortNames"] == short_names
    assert "categories" not in spec["names"]  # v0.5.0 has none
    assert crd["metadata"]["labels"] == MCS_LABELS
    for label in crd["metadata"]["labels"].values():
        assert isinstance(label, str)
    for v in spec["versions"]:
        assert v["subresources"] == {"status": {}}


def _columns(crd: dict[str, Any], version: str) -> list[tuple[str, str, str]]:
    return [
        (c["name"], c["type"], c["jsonPath"])
        for c in _version(crd, version).get("additionalPrinterColumns", [])
    ]


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_printer_columns(
    export_crd: dict[str, Any],
    import_crd: dict[str, Any],
    property_crd: dict[str, Any],
    version: str,
) -> None:
    age = ("Age", "date", ".metadata.creationTimestamp")
    # Upstream v0.5.x shows NAME and AGE for exports; mcs adds the verdict of the merge.
    assert _columns(export_crd, version) == [
        ("Valid", "string", '.status.conditions[?(@.type=="Valid")].status'),
        ("Conflict", "string", '.status.conditions[?(@.type=="Conflict")].reason'),
        age,
        ("Valid Reason", "string", '.status.conditions[?(@.type=="Valid")].reason'),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    ]
    # Upstream's Type, IP and Age stay, in that order around the added columns. The API
    # server prints the first value a column's path finds: a list is printed as JSON
    # unless the path picks one of its items.
    assert _columns(import_crd, version) == [
        ("Type", "string", ".spec.type"),
        ("IP", "string", ".spec.ips[0]"),
        ("Winner", "string", ".status.clusters[0].cluster"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].reason'),
        age,
        ("Second IP", "string", ".spec.ips[1]"),
    ]
    for crd in (export_crd, import_crd):
        for c in _version(crd, version)["additionalPrinterColumns"]:
            path = c["jsonPath"]
            assert not path.endswith((".ips", ".clusters", ".conditions")), path
    wide = [c["name"] for c in _version(import_crd, version)["additionalPrinterColumns"]]
    assert wide[-1] == "Second IP"
    assert _columns(property_crd, version) == [
        ("value", "string", ".spec.value"),
        ("age", "date", ".metadata.creationTimestamp"),
    ]


def test_top_level_shape(export_crd: dict[str, Any], import_crd: dict[str, Any]) -> None:
    for crd in (export_crd, import_crd):
        root = _schema(crd)
        assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
        assert "required" not in root  # spec and status are optional


def test_serviceexport_fields(export_crd: dict[str, Any]) -> None:
    root = _schema(export_crd)
    spec = root["properties"]["spec"]
    assert "required" not in spec
    assert set(spec["properties"]) == {"exportedLabels", "exportedAnnotations"}
    for field in ("exportedLabels", "exportedAnnotations"):
        node = spec["properties"][field]
        assert node["type"] == "object"
        assert node["additionalProperties"] == {"type": "string"}
    status = root["properties"]["status"]
    assert set(status["properties"]) == {"conditions"}


def test_serviceimport_spec(import_crd: dict[str, Any]) -> None:
    spec = _at(_schema(import_crd), "spec")
    assert sorted(spec["required"]) == ["ports", "type"]
    assert set(spec["properties"]) == {
        "ports", "ips", "type", "sessionAffinity", "sessionAffinityConfig",
        "ipFamilies", "internalTrafficPolicy", "trafficDistribution",
    }  # fmt: skip

    t = spec["properties"]["type"]
    assert t["type"] == "string"
    assert t["enum"] == ["ClusterSetIP", "Headless"]

    ports = spec["properties"]["ports"]
    assert ports["type"] == "array"
    assert ports["x-kubernetes-list-type"] == "atomic"
    assert "maxItems" not in ports
    port = ports["items"]
    assert port["required"] == ["port"]
    assert set(port["properties"]) == {"name", "protocol", "appProtocol", "port"}
    assert port["properties"]["port"]["type"] == "integer"
    assert port["properties"]["port"]["format"] == "int32"
    protocol = port["properties"]["protocol"]
    assert protocol["type"] == "string"
    assert "default" not in protocol and "enum" not in protocol  # as in v0.5.0

    for field in ("ips", "ipFamilies"):
        node = spec["properties"][field]
        assert node["type"] == "array"
        assert node["maxItems"] == 2
        assert node["items"]["type"] == "string"

    for field in ("sessionAffinity", "internalTrafficPolicy", "trafficDistribution"):
        node = spec["properties"][field]
        assert node["type"] == "string"
        assert "enum" not in node and "default" not in node

    timeout = _at(spec, "sessionAffinityConfig.clientIP.timeoutSeconds")
    assert timeout["type"] == "integer"
    assert timeout["format"] == "int32"


def test_serviceimport_status(import_crd: dict[str, Any]) -> None:
    status = _at(_schema(import_crd), "status")
    assert set(status["properties"]) == {"clusters", "conditions"}
    clusters = status["properties"]["clusters"]
    assert clusters["type"] == "array"
    assert clusters["x-kubernetes-list-type"] == "map"
    assert clusters["x-kubernetes-list-map-keys"] == ["cluster"]
    assert clusters["items"]["required"] == ["cluster"]
    assert set(clusters["items"]["properties"]) == {"cluster"}
    assert clusters["items"]["properties"]["cluster"]["type"] == "string"


def _conditions(crd: dict[str, Any]) -> Schema:
    return _at(_schema(crd), "status.conditions")


def _strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip_descriptions(v) for v in node]
    return node


def test_condition_schema(export_crd: dict[str, Any], import_crd: dict[str, Any]) -> None:
    conditions = _conditions(export_crd)
    assert _strip_descriptions(conditions) == _strip_descriptions(_conditions(import_crd))
    assert conditions["type"] == "array"
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert sorted(item["required"]) == [
        "lastTransitionTime", "message", "reason", "status", "type",
    ]  # fmt: skip
    props = item["properties"]
    assert set(props) == set(item["required"]) | {"observedGeneration"}
    assert props["type"]["maxLength"] == 316
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["reason"]["minLength"] == 1
    assert props["reason"]["maxLength"] == 1024
    assert props["message"]["maxLength"] == 32768
    assert "minLength" not in props["message"]  # an empty message is allowed
    assert props["observedGeneration"] == {
        **props["observedGeneration"],
        "type": "integer",
        "format": "int64",
        "minimum": 0,
    }
    assert props["lastTransitionTime"]["type"] == "string"
    assert props["lastTransitionTime"]["format"] == "date-time"


def _matches(pattern: str, value: str) -> bool:
    # fullmatch: Python's `$` would also accept a trailing newline, RE2's does not.
    return re.fullmatch(pattern, value) is not None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("PortConflict,TypeConflict", True),
        ("PortConflict", True),
        ("NoConflicts", True),
        ("Some_reason:detail", True),
        ("Port Conflict", False),
        ("PortConflict,", False),
        ("1PortConflict", False),
        ("", False),
    ],
)
def test_reason_pattern(export_crd: dict[str, Any], value: str, ok: bool) -> None:
    reason = _conditions(export_crd)["items"]["properties"]["reason"]
    assert _matches(reason["pattern"], value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Conflict", True),
        ("Valid", True),
        ("mcs.example.com/Synced", True),
        ("Not Valid", False),
        ("Example.com/Foo", False),
        ("", False),
    ],
)
def test_condition_type_pattern(export_crd: dict[str, Any], value: str, ok: bool) -> None:
    type_ = _conditions(export_crd)["items"]["properties"]["type"]
    assert _matches(type_["pattern"], value) is ok


# --------------------------------------------------------------------------
# ClusterProperty (KEP-2149).


def test_clusterproperty(property_crd: dict[str, Any]) -> None:
    spec = property_crd["spec"]
    assert property_crd["metadata"]["name"] == "clusterproperties.about.k8s.io"
    assert spec["group"] == "about.k8s.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "ClusterProperty"
    assert spec["names"]["plural"] == "clusterproperties"
    assert spec["names"]["singular"] == "clusterproperty"
    assert spec["names"]["categories"] == ["multicluster"]
    for version in ("v1alpha1", "v1beta1"):
        root = _schema(property_crd, version)
        assert root["required"] == ["spec"]
        cp_spec = root["properties"]["spec"]
        assert cp_spec["required"] == ["value"]
        assert set(cp_spec["properties"]) == {"value"}
        value = cp_spec["properties"]["value"]
        assert value["type"] == "string"
        assert value["minLength"] == 1
        assert value["maxLength"] == 128000
