#!/usr/bin/env bash
# The quick start, as `make demo` runs it: a 2-cluster mesh (real kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok nodes and CoreDNS per cluster), the
# controller, the rebel-base and conflict examples, then what a user looks at: pods,
# EndpointSlices, and which pod IPs of which cluster stand behind the clusterset name.
# Everything it starts is stopped by `mcs mesh down` (or `make demo-down`).
#   MCS_DEMO_DIR  state directory (default .mcs-mesh)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
DIR=$(realpath -m "${MCS_DEMO_DIR:-.mcs-mesh}")
step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Starting a 2-cluster mesh (the first run builds the binaries: about 30 min on 2 cores)"
mcs mesh up --clusters 2 --dns --dir "$DIR"
export KUBECONFIG="$DIR/kubeconfig"

step "Starting the controller (central mode; log in $DIR/controller.log)"
HEALTH=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid nohup mcs run --mode central --kubeconfig "$KUBECONFIG" --log-format json \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address "127.0.0.1:$HEALTH" >"$DIR/controller.log" 2>&1 &
for _ in $(seq 150); do
  python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$HEALTH/readyz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

step "Exporting rebel-base from both clusters (the Cilium tutorial's example)"
show kubectl --context cluster1 apply -f examples/rebel-base/cluster1.yaml -f examples/rebel-base/export.yaml
show kubectl --context cluster2 apply -f examples/rebel-base/cluster2.yaml -f examples/rebel-base/export.yaml

step "Exporting tatooine from cluster1, then a conflicting tatooine from cluster2"
show kubectl --context cluster1 apply -f examples/conflicts/cluster1.yaml
kubectl --context cluster1 wait --for=create serviceimport/tatooine --timeout=60s >/dev/null
sleep 1.1  # creationTimestamps have one-second resolution: make cluster1's export the oldest
show kubectl --context cluster2 apply -f examples/conflicts/cluster2.yaml

step "Waiting for the pods to run and the controller to converge"
imported() {  # ready endpoints (both families) cluster $1 imports from cluster $2
  kubectl --context "$1" get endpointslices -l "multicluster.kubernetes.io/service-name=rebel-base,multicluster.kubernetes.io/source-cluster=$2" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}x{end}' | wc -c
}
for ctx in cluster1 cluster2; do
  kubectl --context $ctx rollout status deployment/rebel-base --timeout=120s >/dev/null
  kubectl --context $ctx wait --for=create serviceimport/rebel-base --timeout=60s >/dev/null
  kubectl --context $ctx wait --for=jsonpath='{.spec.ips}' serviceimport/rebel-base --timeout=60s >/dev/null
  kubectl --context $ctx wait --for=condition=Conflict serviceexport/tatooine --timeout=60s >/dev/null
done
for pair in "cluster1 cluster2" "cluster2 cluster1"; do
  for _ in $(seq 120); do [ "$(imported $pair)" -ge 4 ] && break; sleep 0.5; done
done

step "Global services (examples/global-services): rebel-base annotated service.cilium.io/global in both"
G=examples/global-services; SEL=kubernetes.io/service-name=rebel-base
remote() { kubectl --context "$1" get endpointslices -l "$SEL,multicluster.kubernetes.io/source-cluster=$2" -o name; }
backends() { for c in cluster1 cluster2; do show kubectl --context $c get endpointslices -l $SEL -L multicluster.kubernetes.io/source-cluster; done; }
for i in 1 2; do kubectl --context cluster$i apply -f $G/global-service.yaml >/dev/null; done
for _ in $(seq 150); do [ -n "$(remote cluster2 cluster1)" ] && [ -n "$(remote cluster1 cluster2)" ] && break; sleep 0.2; done
backends
step "cluster1 stops sharing (service.cilium.io/shared=false): cluster2 keeps only its own backends"
show kubectl --context cluster1 annotate service rebel-base service.cilium.io/shared=false --overwrite
for _ in $(seq 150); do [ -z "$(remote cluster2 cluster1)" ] && break; sleep 0.2; done
backends

step "What a user looks at"
show kubectl --context cluster1 get pods -o wide -l app=rebel-base
show kubectl --context cluster2 get pods -o wide -l app=rebel-base
# kube's own slices of rebel-base next to the ones imported from the other cluster
show kubectl --context cluster1 get endpointslices -L multicluster.kubernetes.io/source-cluster
show kubectl --context cluster1 get serviceimports
show kubectl --context cluster2 get serviceimports

step "Who answers rebel-base.default.svc.clusterset.local (each cluster's CoreDNS)"
python - "$DIR" <<'PY'
import json, subprocess, sys
from pathlib import Path

import dns.message, dns.query

state = json.loads((Path(sys.argv[1]) / "state.json").read_text())
name = "rebel-base.default.svc.clusterset.local"
for member in state["members"]:
    ctx = member["name"]
    answer = {
        rtype: sorted(
            r.address
            for rrset in dns.query.udp(
                dns.message.make_query(name, rtype), "127.0.0.1", port=member["dns_port"], timeout=2
            ).answer
            for r in rrset
        )
        for rtype in ("A", "AAAA")
    }
    print(f"{ctx}: {name} -> A {', '.join(answer['A'])}  AAAA {', '.join(answer['AAAA'])}")
    slices = json.loads(subprocess.run(
        ["kubectl", "--context", ctx, "get", "endpointslices", "-o", "json",
         "-l", "multicluster.kubernetes.io/service-name=rebel-base"],
        check=True, capture_output=True, text=True).stdout)["items"]
    behind: dict[str, list[str]] = {}
    for s in slices:
        source = s["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"]
        behind.setdefault(source, []).extend(
            a for e in s.get("endpoints") or [] if e["conditions"].get("ready")
            for a in e["addresses"])
    for source in sorted(behind):
        print(f"    pods of {source}: {', '.join(sorted(behind[source]))}")
PY
conditions='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
show kubectl --context cluster2 get serviceexport tatooine -o jsonpath="$conditions"
show mcs status --kubeconfig "$KUBECONFIG" --controller "http://127.0.0.1:$HEALTH" --fail-on never

step "Done. The mesh and the controller keep running; try kubectl with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "Tear everything down with:  .venv/bin/mcs mesh down --dir $DIR   (or: make demo-down)"
