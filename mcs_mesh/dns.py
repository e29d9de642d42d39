"""CoreDNS for a mesh member: ``clusterset.local`` (and ``cluster.local``) on loopback.

CoreDNS 1.12.2 and later serve the MCS DNS specification natively: the kubernetes
plugin's ``multicluster clusterset.local`` option watches the member's ServiceImports
(v1alpha1) and the EndpointSlices labelled ``multicluster.kubernetes.io/service-name``.
The binary is built by ``binaries.ensure(coredns=True)`` from ``mcs_mesh/coredns``.

Each member gets its own CoreDNS reading that member's API server through the mesh
kubeconfig (its context is the member's name), listening on ``127.0.0.1:<dns_port>``
for UDP and TCP. Its Corefile and log live in the mesh state directory, and its command
line names that directory, which is how ``mcs mesh down`` finds and stops it.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from mcs_mesh.binaries import Binaries
from mcs_mesh.processes import free_port, spawn, stop_pids
from mcs_mesh.state import Member, MeshError, MeshState

ZONE = "clusterset.local"
#: The MCS DNS specification's schema version, answered for ``TXT dns-version.clusterset.local``.
SCHEMA_VERSION = "1.0.0"


def corefile(kubeconfig: Path, context: str, dns_port: int, ready_port: int) -> str:
    """The Corefile of one member's CoreDNS.

    ``template`` runs before ``kubernetes`` (the build fixes the plugin order) and
    answers only the version TXT; every other name passes on to ``kubernetes``.
    """
    version_re = "^dns-version\\." + ZONE.replace(".", "\\.") + "\\.$"
    return f"""\
{ZONE}:{dns_port} cluster.local:{dns_port} {{
    bind 127.0.0.1
    ready 127.0.0.1:{ready_port}
    errors
    log
    template IN TXT {ZONE} {{
        match {version_re}
        answer "{{{{ .Name }}}} 28800 IN TXT \\"{SCHEMA_VERSION}\\""
        fallthrough
    }}
    kubernetes cluster.local {ZONE} {{
        kubeconfig "{kubeconfig}" {context}
        multicluster {ZONE}
    }}
}}
"""


def start_dns(
    bins: Binaries, state: MeshState, member: Member, detach: bool, *, within: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start CoreDNS for ``member`` and return once it answers.

    Writes ``<mesh dir>/coredns-<member>.Corefile``, logs to
    ``<mesh dir>/logs/coredns-<member>.log``, sets ``member.dns_port`` and
    ``member.dns_pid`` and saves the state. ``detach`` has ``spawn``'s meaning: False
    ties CoreDNS to the calling *thread* (PR_SET_PDEATHSIG), so call this from the
    thread that owns the mesh. Ready means: the ``ready`` plugin says the kubernetes
    plugin has synced its caches, and ``TXT dns-version.clusterset.local`` answers
    ``"1.0.0"``. Raises ``MeshError`` (and stops the process) when it does not become
    ready within ``within`` seconds.
    """
    if bins.coredns is None:
        raise MeshError(
            "CoreDNS is not built; build it with 'mcs mesh build --dns' "
            "(binaries.ensure(coredns=True))"
        )
    directory = Path(state.dir)
    dns_port, ready_port = free_port(), free_port()
    conf = directory / f"coredns-{member.name}.Corefile"
    conf.write_text(corefile(state.kubeconfig, member.name, dns_port, ready_port))
    log = directory / "logs" / f"coredns-{member.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = spawn([str(bins.coredns), "-conf", str(conf)], log, detach)
    member.dns_port, member.dns_pid = dns_port, proc.pid
    state.save()
    try:
        _wait_ready(proc, log, dns_port, ready_port, within)
    except BaseException:
        stop_pids([proc.pid], directory, grace=5)
        member.dns_port = member.dns_pid = None
        state.save()
        raise
    return proc


def _wait_ready(
    proc: subprocess.Popen[bytes], log: Path, dns_port: int, ready_port: int, within: float
) -> None:
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise MeshError(f"{proc.args!r} exited with {proc.returncode}; log {log}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=2) as r:
                ready = r.status == 200
        except (urllib.error.URLError, OSError) as e:
            ready, last = False, f"ready: {e}"
        if ready:
            try:
                answer = query_txt(dns_port, f"dns-version.{ZONE}")
            except (OSError, dns.exception.DNSException) as e:
                answer, last = [], f"DNS: {e}"
            if answer == [SCHEMA_VERSION]:
                return
            last = f"TXT dns-version.{ZONE} answered {answer!r}"
        time.sleep(0.2)
    raise MeshError(
        f"CoreDNS on 127.0.0.1:{dns_port} not ready after {within:.0f}s ({last}); see {log}"
    )


def query_txt(port: int, name: str, timeout: float = 1.0) -> list[str]:
    """The TXT strings of ``name`` from the server on ``127.0.0.1:port`` (UDP)."""
    answer = dns.query.udp(
        dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=timeout
    )
    return [
        b"".join(rdata.strings).decode(errors="replace")
        for rrset in answer.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    ]
