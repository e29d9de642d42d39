"""Memory benchmark: a tenant of one member creates N foreign Services (not exported)
carrying large annotations; how much memory does the controller that caches every
member need?

    .venv/bin/python bench/memory.py --services 10000 --annotation-kib 16

Starts its own 2-cluster mesh (in a temporary directory), creates the Services in
cluster2 (headless, so no cluster IPs are used up), then starts one central
``mcs run`` and reports its resident memory once its caches are synced (VmRSS, and the
peak VmHWM, which the first lists set). ``--mcs-path DIR`` (repeatable; ``.`` is this
checkout) runs the controller from other checkouts (the parent of their ``mcs``
package directory) one after the other on the same mesh and objects, to compare
versions in one run.

    .venv/bin/python bench/memory.py --services 10000 --mcs-path . --mcs-path ../old
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import mcsrun
from kubernetes_asyncio import client

from mcs.runtime import kubeapi
from mcs_mesh.mesh import Mesh
from mcs_mesh.processes import free_port


def _rss_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 0)
    return out


async def _create(api: client.ApiClient, ns: str, n: int, annotation_kib: int) -> None:
    core = client.CoreV1Api(api)
    gate = asyncio.Semaphore(16)
    blob = "x" * (annotation_kib * 1024)

    async def one(i: int) -> None:
        body = {
            "metadata": {
                "name": f"svc-{i:05}",
                "annotations": {"tenant.example.com/blob": blob},
                "labels": {"app": f"svc-{i:05}", "tenant.example.com/junk": "y" * 63},
            },
            "spec": {
                "clusterIP": "None",
                "selector": {"app": f"svc-{i:05}"},
                "ports": [{"name": "http", "port": 80}],
            },
        }
        async with gate:
            await asyncio.wait_for(core.create_namespaced_service(ns, body), timeout=60)

    await asyncio.gather(*(one(i) for i in range(n)))


async def _measure(kubeconfig: Path, tmp: Path, mcs_path: str) -> dict[str, object]:
    """Start one central controller from ``mcs_path`` (``.``: this checkout), wait
    until its caches are synced, read its memory 5 s later and stop it."""
    metrics, health = free_port(), free_port()
    env = dict(os.environ)
    here = mcs_path in ("", ".")
    if not here:
        env["PYTHONPATH"] = mcs_path
    with (tmp / "controller.log").open("ab") as log:
        proc = subprocess.Popen(
            mcsrun.argv(kubeconfig, metrics, health),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=None if here else mcs_path,  # with -m, the working directory comes first
        )
    try:
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"controller exited {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2):
                    break
            except OSError:
                await asyncio.sleep(0.5)
        synced = time.monotonic() - started
        await asyncio.sleep(5)
        return {
            "synced_seconds": round(synced, 1),
            **{f"controller_{k}_mib": v for k, v in _rss_mib(proc.pid).items()},
            "mcs_path": "this checkout" if here else mcs_path,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--annotation-kib", type=int, default=16)
    parser.add_argument(
        "--mcs-path",
        action="append",
        help="run the controller from this checkout (repeatable; default: this one)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcs-bench-mem-") as tmp:
        mesh = Mesh(Path(tmp) / "mesh", say=lambda s: None)
        state = await mesh.up(2, detach=False)
        try:
            api = await kubeapi.new_client(str(state.kubeconfig), "cluster2")
            try:
                ns = "tenant"
                await client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
                started = time.monotonic()
                await _create(api, ns, args.services, args.annotation_kib)
                created = time.monotonic() - started
            finally:
                await api.close()
            sizes = {"services": args.services, "annotation_kib": args.annotation_kib}
            for path in args.mcs_path or ["."]:
                row = await _measure(state.kubeconfig, Path(tmp), path)
                print(json.dumps({**sizes, "create_seconds": round(created, 1), **row}), flush=True)
        finally:
            mesh.down()


if __name__ == "__main__":
    asyncio.run(main())
