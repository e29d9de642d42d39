#!/usr/bin/env bash
# The quick start, as `make demo` runs it: a 2-cluster mesh of real kube-apiservers,
# the controller, the rebel-base and conflict examples, then what a user looks at.
# Everything it starts is stopped by `mcs mesh down` (or `make demo-down`).
#   MCS_DEMO_DIR  state directory (default .mcs-mesh)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
DIR=$(realpath -m "${MCS_DEMO_DIR:-.mcs-mesh}")
step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Starting a 2-cluster mesh (the first run builds kube-apiserver, etcd and CoreDNS: 10-15 min)"
mcs mesh up --clusters 2 --dns --dir "$DIR"
export KUBECONFIG="$DIR/kubeconfig"

step "Starting the controller (central mode; log in $DIR/controller.log)"
HEALTH=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid nohup mcs run --kubeconfig "$KUBECONFIG" --log-format json \
  --metrics-addr 127.0.0.1:0 --health-addr "127.0.0.1:$HEALTH" >"$DIR/controller.log" 2>&1 &
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

step "Waiting for the controller to converge"
for ctx in cluster1 cluster2; do
  kubectl --context $ctx wait --for=create serviceimport/rebel-base --timeout=60s >/dev/null
  kubectl --context $ctx wait --for=jsonpath='{.spec.ips}' serviceimport/rebel-base --timeout=60s >/dev/null
  kubectl --context $ctx wait --for=condition=Conflict serviceexport/tatooine --timeout=60s >/dev/null
done

step "Global services (examples/global-services): rebel-base annotated service.cilium.io/global in both"
G=examples/global-services; SEL=kubernetes.io/service-name=rebel-base
remote() { kubectl --context "$1" get endpointslices -l "$SEL,multicluster.kubernetes.io/source-cluster=$2" -o name; }
backends() { for c in cluster1 cluster2; do show kubectl --context $c get endpointslices -l $SEL -L multicluster.kubernetes.io/source-cluster; done; }
for i in 1 2; do kubectl --context cluster$i apply -f $G/global-service.yaml -f $G/mesh-endpointslice-cluster$i.yaml >/dev/null; done
for _ in $(seq 150); do [ -n "$(remote cluster2 cluster1)" ] && [ -n "$(remote cluster1 cluster2)" ] && break; sleep 0.2; done
backends
step "cluster1 stops sharing (service.cilium.io/shared=false): cluster2 keeps only its own backends"
show kubectl --context cluster1 annotate service rebel-base service.cilium.io/shared=false --overwrite
for _ in $(seq 150); do [ -z "$(remote cluster2 cluster1)" ] && break; sleep 0.2; done
backends

step "What a user looks at"
show kubectl --context cluster1 get serviceimports
show kubectl --context cluster2 get serviceimports
conditions='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
show kubectl --context cluster2 get serviceexport tatooine -o jsonpath="$conditions"
show mcs status --kubeconfig "$KUBECONFIG" --controller "http://127.0.0.1:$HEALTH" --fail-on never

step "Done. The mesh and the controller keep running; try kubectl with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "Tear everything down with:  .venv/bin/mcs mesh down --dir $DIR   (or: make demo-down)"
