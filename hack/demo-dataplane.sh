#!/usr/bin/env bash
# Cilium's global-service tutorial and the MCS-API guide, for real: a 2-cluster dataplane
# mesh (`mcs mesh up --dataplane`: containerd, kubelet, kube-proxy and CoreDNS per member),
# the controller in central mode, and `kubectl exec deployment/x-wing -- curl ...`
# answered by pods of both clusters. Then shared=false, the clusterset.local name, and
# affinity=local failover measured by traffic. `mcs mesh down` stops it all.
#   MCS_DEMO_DIR  state directory (default .mcs-mesh)     MCS_DEMO_CURLS  curls per step (10)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
DIR=$(realpath -m "${MCS_DEMO_DIR:-.mcs-mesh}")
N=${MCS_DEMO_CURLS:-10}
step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# which cluster answered each of N curls of $2 from x-wing in cluster $1
tally() {
  printf '$ kubectl --context %s exec deployment/x-wing -- curl -s %s   (x%s)\n' "$1" "$2" "$N"
  kubectl --context "$1" exec deployment/x-wing -- sh -c \
    "for i in \$(seq $N); do curl -s -m 2 $2 || echo '{\"Cluster\": \"no answer\"}'; done" |
    sed -n 's/.*"Cluster": "\([^"]*\)".*/\1/p' | sort | uniq -c | sed 's/^/    /'
}
until_only() {  # wait until every curl of $2 from cluster $1 is answered by cluster $3
  for _ in $(seq 60); do
    [ "$(kubectl --context "$1" exec deployment/x-wing -- sh -c "for i in 1 2 3 4 5 6; do curl -s -m 2 $2; done" | grep -vc "$3" || true)" = 0 ] && return
    sleep 1
  done
}

step "Starting a 2-cluster dataplane mesh (first run builds the binaries)"
mcs mesh up --dataplane --dir "$DIR"
export KUBECONFIG="$DIR/kubeconfig"

step "Starting the controller (central mode; log in $DIR/controller.log)"
HEALTH=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid nohup mcs run --mode central --kubeconfig "$KUBECONFIG" --log-format json \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address "127.0.0.1:$HEALTH" >"$DIR/controller.log" 2>&1 &
for _ in $(seq 150); do
  python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$HEALTH/readyz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

step "The tutorial's manifests (examples/dataplane): a global rebel-base and x-wing in each cluster"
show kubectl --context cluster1 apply -f examples/dataplane/cluster1.yaml
show kubectl --context cluster2 apply -f examples/dataplane/cluster2.yaml
for ctx in cluster1 cluster2; do
  kubectl --context $ctx rollout status deployment/rebel-base --timeout=120s >/dev/null
  kubectl --context $ctx rollout status deployment/x-wing --timeout=120s >/dev/null
done
show kubectl --context cluster1 get pods -o wide

step "curl rebel-base from x-wing: replies from pods in both clusters"
for ctx in cluster1 cluster2; do
  for _ in $(seq 60); do
    [ "$(kubectl --context $ctx get endpointslices -l kubernetes.io/service-name=rebel-base -o name | wc -l)" -ge 2 ] && break
    sleep 0.5
  done
done
tally cluster1 rebel-base
tally cluster2 rebel-base

step "cluster1 stops sharing (service.cilium.io/shared=false): cluster2 hears only itself"
show kubectl --context cluster1 annotate service rebel-base service.cilium.io/shared=false
until_only cluster2 rebel-base Cluster-2
tally cluster1 rebel-base
tally cluster2 rebel-base
show kubectl --context cluster1 annotate service rebel-base service.cilium.io/shared-

step "MCS: a ServiceExport in both clusters; the clusterset name from a pod in each"
for ctx in cluster1 cluster2; do
  show kubectl --context $ctx apply -f examples/rebel-base/export.yaml
done
for ctx in cluster1 cluster2; do
  kubectl --context $ctx wait --for=jsonpath='{.spec.ips}' serviceimport/rebel-base --timeout=60s >/dev/null
done
show kubectl --context cluster1 get serviceimport rebel-base
for ctx in cluster1 cluster2; do tally $ctx rebel-base.default.svc.clusterset.local; done

step "affinity=local: cluster1 prefers its own pods, and fails over to cluster2's when they are gone"
show kubectl --context cluster1 annotate service rebel-base service.cilium.io/affinity=local
until_only cluster1 rebel-base Cluster-1
tally cluster1 rebel-base
# a curl every 50 ms in x-wing, each answer stamped with the kernel's uptime (one clock
# for the host and every pod), while cluster1's rebel-base scales to 0
kubectl --context cluster1 exec deployment/x-wing -- sh -c \
  'end=$(( $(cut -d. -f1 /proc/uptime) + 25 )); while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
     a=$(curl -s -m 1 rebel-base | sed -n "s/.*\"Cluster\": \"\([^\"]*\)\".*/\1/p"); echo "$(cut -d" " -f1 /proc/uptime) ${a:-none}"; sleep 0.05; done' >"$DIR/failover.txt" &
LOOP=$!
sleep 3
T0=$(cut -d' ' -f1 /proc/uptime)
show kubectl --context cluster1 scale deployment/rebel-base --replicas=0
sleep 12
show kubectl --context cluster1 scale deployment/rebel-base --replicas=2
kubectl --context cluster1 rollout status deployment/rebel-base --timeout=120s >/dev/null
wait $LOOP || true
python - "$T0" "$DIR/failover.txt" <<'EOF'
import sys
t0 = float(sys.argv[1])
rows = [line.split() for line in open(sys.argv[2]) if len(line.split()) == 2]
after = [(float(t), who) for t, who in rows if float(t) >= t0]
first = next((t for t, who in after if who == "Cluster-2"), None)
gaps = sum(1 for t, who in after if who == "none" and (first is None or t <= first))
print(f"    scale to 0 at uptime {t0:.2f}s; first answer from Cluster-2 after "
      f"{'never' if first is None else f'{first - t0:.2f}s'}; {gaps} curls unanswered before it")
back = [t for t, who in after if who == "Cluster-1" and first is not None and t > first]
print(f"    after scaling back: Cluster-1 answers again at +{back[0] - t0:.2f}s" if back else
      "    after scaling back: Cluster-1 not answering yet")
EOF
tally cluster1 rebel-base

step "Done. Stop everything with: mcs mesh down --dir $DIR"
