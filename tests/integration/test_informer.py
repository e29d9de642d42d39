"""The informer against a real API server: a watch forced into 410 Gone relists and
loses no event. (Resuming from resourceVersion "1" is too old for a CRD created after
the apiserver started, so the ServiceExport watch answers with an ERROR 410 event.)"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client

from mcs.core.api import SERVICE_EXPORTS, Obj, key_of
from mcs.runtime.informer import Informer
from mcs.runtime.observability import REGISTRY


def _export(ns: str, name: str) -> Obj:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1beta1",
        "kind": "ServiceExport",
        "metadata": {"name": name, "namespace": ns},
    }


async def test_watch_gone_relists_without_losing_events(
    apis: dict[str, client.ApiClient], namespace: str
) -> None:
    api = apis["cluster1"]
    custom = client.CustomObjectsApi(api)
    create = custom.create_namespaced_custom_object
    await create(
        "multicluster.x-k8s.io",
        "v1beta1",
        namespace,
        "serviceexports",
        _export(namespace, "before"),
    )
    seen: list[tuple[str, tuple[str, str]]] = []

    def on_event(etype: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        if key_of(obj)[0] == namespace:
            seen.append((etype, key_of(obj)))

    def gone() -> float:
        return (
            REGISTRY.get_sample_value(
                "mcs_watch_restarts_total",
                {"cluster": "cluster1", "resource": SERVICE_EXPORTS.name, "reason": "gone"},
            )
            or 0.0
        )

    gone_before = gone()
    informer = Informer(
        api,
        cluster="cluster1",
        kind=SERVICE_EXPORTS,
        on_event=on_event,
        initial_watch_resource_version="1",
    )
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        await create(
            "multicluster.x-k8s.io",
            "v1beta1",
            namespace,
            "serviceexports",
            _export(namespace, "after"),
        )
        async with asyncio.timeout(15):
            while informer.get(namespace, "after") is None:
                await asyncio.sleep(0.05)
        assert informer.relists >= 2, "the forced 410 should have caused a relist"
        assert gone() > gone_before
        assert informer.get(namespace, "before") is not None
        assert ("ADDED", (namespace, "after")) in seen
        assert [k for _, k in seen].count((namespace, "before")) == 1, seen
    finally:
        await informer.stop()
