"""Failover benchmark for a global Service with ``service.cilium.io/affinity: local``.

rebel-base is global in cluster1 (affinity local) and cluster2, each with one
endpoint in its own EndpointSlice. Each round marks cluster1's endpoint not ready and
times how long until cluster1 holds cluster2's endpoint, ready, in a slice of ours
(failover); then marks it ready again and times how long until that slice is gone
(failback). The clock starts just before the update is sent and stops when a poll
(every 10 ms) of cluster1's EndpointSlices sees the result.

    .venv/bin/python bench/failover.py --rounds 20 [--mode central|per-cluster]

Starts its own 2-cluster mesh (in a temporary directory) and ``mcs run``; prints one
JSON line with the median, 90th percentile and maximum of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mcsrun
from kubernetes_asyncio import client

from mcs.runtime import kubeapi
from mcs_mesh.mesh import Mesh
from mcs_mesh.processes import free_port

NS, NAME = "bench-failover", "rebel-base"
OURS = "mcs-controller.dev"


def _service(affinity: str | None) -> dict[str, Any]:
    ann = {"service.cilium.io/global": "true"}
    if affinity:
        ann["service.cilium.io/affinity"] = affinity
    return {
        "metadata": {"name": NAME, "annotations": ann},
        "spec": {"ports": [{"port": 80}], "selector": {"name": NAME}},
    }


def _slice(address: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{NAME}-local",
            "labels": {
                "kubernetes.io/service-name": NAME,
                "endpointslice.kubernetes.io/managed-by": "bench.example",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
    }


async def _remote_ready(api: client.ApiClient) -> bool:
    got = await client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        NS, label_selector=f"kubernetes.io/service-name={NAME}"
    )
    return any(
        (s.metadata.labels or {}).get("endpointslice.kubernetes.io/managed-by") == OURS
        and any(e.conditions.ready for e in s.endpoints or [])
        for s in got.items
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("no convergence within 60 s")
        await asyncio.sleep(0.01)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mode", choices=["central", "per-cluster"], default="central")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcs-bench-") as tmp:
        mesh = Mesh(Path(tmp) / "mesh", say=lambda s: None)
        state = await mesh.up(2, detach=False)
        apis = {
            m.name: await kubeapi.new_client(str(state.kubeconfig), m.name) for m in state.members
        }
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for ctx, (affinity, address) in {
                "cluster1": ("local", "10.1.0.1"),
                "cluster2": (None, "10.2.0.1"),
            }.items():
                core = client.CoreV1Api(apis[ctx])
                await core.create_namespace({"metadata": {"name": NS}})
                await core.create_namespaced_service(NS, _service(affinity))
                await client.DiscoveryV1Api(apis[ctx]).create_namespaced_endpoint_slice(
                    NS, _slice(address, True)
                )
            locals_ = [""] if args.mode == "central" else list(apis)
            for i, local in enumerate(locals_):
                health = free_port()
                log = (Path(tmp) / f"controller-{i}.log").open("wb")
                procs.append(
                    subprocess.Popen(
                        mcsrun.argv(
                            state.kubeconfig,
                            free_port(),
                            health,
                            *(["--local", local] if local else []),
                        ),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                while not _ready(health):
                    await asyncio.sleep(0.2)
            c1 = apis["cluster1"]
            slices = client.DiscoveryV1Api(c1)
            await asyncio.sleep(2)
            failover: list[float] = []
            failback: list[float] = []
            for _ in range(args.rounds):
                started = time.monotonic()
                await slices.replace_namespaced_endpoint_slice(
                    f"{NAME}-local", NS, _slice("10.1.0.1", False)
                )
                await _until(lambda: _remote_ready(c1))
                failover.append(time.monotonic() - started)
                started = time.monotonic()
                await slices.replace_namespaced_endpoint_slice(
                    f"{NAME}-local", NS, _slice("10.1.0.1", True)
                )

                async def gone() -> bool:
                    return not await _remote_ready(c1)

                await _until(gone)
                failback.append(time.monotonic() - started)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            for api in apis.values():
                await api.close()
            mesh.down()

    def ms(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_ms": round(statistics.median(ordered) * 1000),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000),
            "max_ms": round(ordered[-1] * 1000),
        }

    print(
        json.dumps(
            {
                "mode": args.mode,
                "rounds": args.rounds,
                "failover": ms(failover),
                "failback": ms(failback),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
