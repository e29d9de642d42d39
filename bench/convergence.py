"""Convergence benchmark: N Services + ServiceExports created in cluster1 of a
3-cluster mesh; how long until every cluster holds a correct ServiceImport for each
(type ClusterSetIP, cluster-set IPs, the Service's ports), how many API writes that
took per export, and the controller's peak memory.

    .venv/bin/python bench/convergence.py --exports 100 1000

Starts its own mesh (in a temporary directory) and one central ``mcs run``; prints
one JSON line per N and a Markdown table for README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from mcs.mesh.mesh import Mesh, free_port

PORTS = [
    {"name": "http", "port": 80, "protocol": "TCP"},
    {"name": "dns", "port": 53, "protocol": "UDP"},
]


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in r.read().decode().splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _create(api: client.ApiClient, ns: str, n: int) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        name = f"svc-{i:04}"
        async with gate:
            await core.create_namespaced_service(
                ns,
                {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": PORTS}},
            )
            await custom.create_namespaced_custom_object(
                "multicluster.x-k8s.io",
                "v1beta1",
                ns,
                "serviceexports",
                {
                    "apiVersion": "multicluster.x-k8s.io/v1beta1",
                    "kind": "ServiceExport",
                    "metadata": {"name": name, "namespace": ns},
                },
            )

    await asyncio.gather(*(one(i) for i in range(n)))


def _correct(item: dict[str, Any]) -> bool:
    spec = item.get("spec", {})
    ports = sorted((p.get("name"), p["port"], p.get("protocol")) for p in spec.get("ports", []))
    return (
        spec.get("type") == "ClusterSetIP"
        and bool(spec.get("ips"))
        and ports == [("dns", 53, "UDP"), ("http", 80, "TCP")]
    )


async def _converged(apis: dict[str, client.ApiClient], ns: str, n: int) -> bool:
    for api in apis.values():
        got = await client.CustomObjectsApi(api).list_namespaced_custom_object(
            "multicluster.x-k8s.io", "v1beta1", ns, "serviceimports"
        )
        if sum(1 for i in got["items"] if _correct(i)) < n:
            return False
    return True


async def run_once(
    kubeconfig: Path, apis: dict[str, client.ApiClient], n: int, logdir: Path
) -> dict[str, Any]:
    ns = f"bench-{n}-{int(time.time())}"
    for api in apis.values():
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    metrics, health = free_port(), free_port()
    with (logdir / f"controller-{n}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcs.cli",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-addr",
                f"127.0.0.1:{metrics}",
                "--health-addr",
                f"127.0.0.1:{health}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2):
                    break
            except OSError:
                await asyncio.sleep(0.2)
        writes0 = _metric(metrics, "mcs_api_writes_total")
        started = time.monotonic()
        await _create(apis["cluster1"], ns, n)
        created = time.monotonic() - started
        while not await _converged(apis, ns, n):
            await asyncio.sleep(0.5)
        took = time.monotonic() - started
        await asyncio.sleep(3)  # let trailing status writes land before counting
        writes = _metric(metrics, "mcs_api_writes_total") - writes0
        return {
            "exports": n,
            "create_seconds": round(created, 1),
            "converged_seconds": round(took, 1),
            "exports_per_second": round(n / took, 1),
            "writes_per_export": round(writes / n, 1),
            "controller_peak_rss_mib": round(_peak_rss_mib(proc.pid), 0),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcs-bench-") as tmp:
        mesh = Mesh(Path(tmp) / "mesh", say=lambda s: None)
        state = await mesh.up(3, detach=False)
        apis = {
            m.name: await config.new_client_from_config(
                config_file=str(state.kubeconfig), context=m.name, persist_config=False
            )
            for m in state.members
        }
        try:
            rows = []
            for n in args.exports:
                row = await run_once(state.kubeconfig, apis, n, Path(tmp))
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            for api in apis.values():
                await api.close()
            mesh.down()
    print(
        "\n| exports | converged (s) | exports/s | API writes per export | controller RSS (MiB) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['exports']} | {r['converged_seconds']} | {r['exports_per_second']} | "
            f"{r['writes_per_export']} | {r['controller_peak_rss_mib']} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
