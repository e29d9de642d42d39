"""The dataplane's egress proxy: HTTP CONNECT on a Unix socket, run in the mesh's router
network namespace, so that kube-apiservers on the host's loopback reach kubelets (and
pods) whose addresses exist only inside the mesh's namespaces.

kube-apiserver's ``EgressSelectorConfiguration`` sends its "cluster" traffic here
(``proxyProtocol: HTTPConnect`` over ``transport.uds``): ``kubectl exec``, ``logs`` and
``port-forward`` go API server -> this socket -> ``CONNECT <node ip>:10250`` -> kubelet.

    python -m mcs_mesh.egress SOCKET MESH_DIR     (MESH_DIR only names the process)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sys

#: where a CONNECT may go: the mesh's node, pod and service ranges (all inside namespaces)
ALLOWED = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "fd00::/8")]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if method != "CONNECT" or not any(ipaddress.ip_address(host) in n for n in ALLOWED):
            writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as e:
        with contextlib.suppress(OSError):
            writer.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{e}".encode())
            await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            with contextlib.suppress(OSError):
                w.close()


async def serve(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(_handle, path)
    os.chmod(path, 0o600)
    async with server:
        await server.serve_forever()


def main() -> None:
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
