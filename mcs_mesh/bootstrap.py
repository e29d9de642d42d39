"""Prepare one member cluster: MCS CRDs established, cluster-id ClusterProperty present."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime import kubeapi


def load_crds(crd_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    if not docs:
        raise FileNotFoundError(f"no CustomResourceDefinition found in {crd_dir}")
    return docs


async def apply_crds(api: client.ApiClient, crds: list[dict[str, Any]], within: float = 30) -> None:
    ext = client.ApiextensionsV1Api(api)
    for crd in crds:
        await ext.patch_custom_resource_definition(
            crd["metadata"]["name"],
            crd,
            field_manager="mcs-mesh",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    deadline = time.monotonic() + within
    for crd in crds:
        name = crd["metadata"]["name"]
        while True:
            got = await ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (got.status.conditions or [])}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {within:.0f}s: {conds}")
            await asyncio.sleep(0.1)


async def set_cluster_id(api: client.ApiClient, cluster_id: str) -> None:
    body = {
        "apiVersion": "about.k8s.io/v1beta1",
        "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"},
        "spec": {"value": cluster_id},
    }
    co = client.CustomObjectsApi(api)
    for attempt in range(50):  # discovery of a fresh CRD can lag a moment behind Established
        try:
            await co.patch_cluster_custom_object(
                "about.k8s.io",
                "v1beta1",
                "clusterproperties",
                "cluster.clusterset.k8s.io",
                body,
                field_manager="mcs-mesh",
                force=True,
                _content_type="application/apply-patch+yaml",
            )
            return
        except ApiException as e:
            if e.status != 404 or attempt == 49:
                raise
            await asyncio.sleep(0.1)


async def bootstrap_cluster(kubeconfig: Path, context: str, crd_dir: Path, cluster_id: str) -> None:
    api = await kubeapi.new_client(str(kubeconfig), context)
    async with api:
        await apply_crds(api, load_crds(crd_dir))
        await set_cluster_id(api, cluster_id)
