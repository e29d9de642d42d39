#!/usr/bin/env bash
# Print a kubeconfig with which the mcs controllers of other members read this one.
#
#   hack/make-remote-kubeconfig.sh CONTEXT [NAMESPACE]
#       CONTEXT: your kubectl context for a member where manifests/remote/ is applied.
#       Prints one cluster, user and context, all named after the member (NAME).
#   hack/make-remote-kubeconfig.sh --in-cluster NAME
#       Prints the context a controller uses for the member it runs in: the API server
#       at kubernetes.default.svc with the Pod's own ServiceAccount token and CA.
#
# Combine the pieces into the Secret a member's controller mounts, for example in
# cluster1 of {cluster1, cluster2}:
#   hack/make-remote-kubeconfig.sh --in-cluster cluster1 > c1.yaml
#   hack/make-remote-kubeconfig.sh cluster2 > c2.yaml
#   KUBECONFIG=c1.yaml:c2.yaml kubectl config view --raw > kubeconfig
#   kubectl --context cluster1 -n mcs-system create secret generic mcs-remote-kubeconfigs \
#       --from-file=kubeconfig --from-literal=mode=per-cluster --from-literal=local-context=cluster1
#
# Environment:
#   NAME             name of the cluster/user/context written (default: CONTEXT)
#   SERVER           API server URL as the *other* clusters reach it (default: the
#                    server of CONTEXT, which may be an address only you can reach)
#   SERVICE_ACCOUNT  whose token to use (default mcs-remote-reader; central mode:
#                    mcs-central-writer)
#   TOKEN_DURATION   lifetime asked of the TokenRequest API (default 720h). The API
#                    server may shorten it (--service-account-max-token-expiration);
#                    the real expiry is printed on stderr. Re-run the script and
#                    update the Secret before then (manifests/README.md, "Tokens and
#                    their rotation"). There are no long-lived token Secrets.
#   KUBECTL          kubectl binary (default: kubectl)
set -euo pipefail

die() { echo "make-remote-kubeconfig: $*" >&2; exit 1; }
warn() { echo "make-remote-kubeconfig: warning: $*" >&2; }
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

KUBECTL=${KUBECTL:-kubectl}
SA_DIR=/var/run/secrets/kubernetes.io/serviceaccount

emit() { # name server ca-line user-lines...
  local name=$1 server=$2 ca=$3
  shift 3
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: "$name"
    cluster:
      server: "$server"
$ca
users:
  - name: "$name"
    user:
$(printf '%s\n' "$@")
contexts:
  - name: "$name"
    context:
      cluster: "$name"
      user: "$name"
current-context: "$name"
EOF
}

[[ $# -ge 1 ]] || usage
if [[ $1 == --in-cluster ]]; then
  [[ $# -eq 2 ]] || usage
  # The kubelet keeps this token file fresh; mcs re-reads it (--credentials-reload-period).
  emit "$2" "https://kubernetes.default.svc" \
    "      certificate-authority: $SA_DIR/ca.crt" \
    "      tokenFile: $SA_DIR/token"
  exit 0
fi
[[ $1 != -* && $# -le 2 ]] || usage

CONTEXT=$1
NAMESPACE=${2:-mcs-system}
NAME=${NAME:-$CONTEXT}
SA=${SERVICE_ACCOUNT:-mcs-remote-reader}
TOKEN_DURATION=${TOKEN_DURATION:-720h}
k() { "$KUBECTL" --context "$CONTEXT" "$@"; }

k -n "$NAMESPACE" get serviceaccount "$SA" >/dev/null ||
  die "no ServiceAccount $NAMESPACE/$SA in context $CONTEXT: apply manifests/remote/ there first"

view() { k config view --raw --minify --flatten -o "jsonpath=$1"; }
server=${SERVER:-$(view '{.clusters[0].cluster.server}')}
[[ -n $server ]] || die "context $CONTEXT has no server"
ca=$(view '{.clusters[0].cluster.certificate-authority-data}')

# A short-lived token from the TokenRequest API, and when it really expires.
read -r token expires < <(k -n "$NAMESPACE" create token "$SA" --duration "$TOKEN_DURATION" \
  -o go-template='{{.status.token}} {{.status.expirationTimestamp}}{{"\n"}}') ||
  die "cannot request a token for $NAMESPACE/$SA in context $CONTEXT"
[[ -n $token ]] || die "empty token for $NAMESPACE/$SA"
echo "make-remote-kubeconfig: token of $NAMESPACE/$SA expires at $expires; renew it before" >&2
# Trust the CA your kubeconfig trusts for this server, else the cluster's published one.
[[ -n $ca ]] || ca=$(k -n "$NAMESPACE" get configmap kube-root-ca.crt \
  -o go-template='{{index .data "ca.crt"}}' 2>/dev/null | base64 | tr -d '\n' || true)
if [[ -n $ca ]]; then
  ca_line="      certificate-authority-data: $ca"
else
  warn "no CA for $server: the system's trusted CAs will be used"
  ca_line=""
fi
emit "$NAME" "$server" "$ca_line" "      token: \"$token\""
