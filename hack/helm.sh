#!/usr/bin/env bash
# Print the path of helm, building it first from its Go module helm.sh/helm/v4 (through the
# Go module proxy) into the same cache as the control-plane binaries when it is not there yet.
#   hack/helm.sh            -> /root/.cache/mcs/bin/helm-v4.3.2/helm
# HELM=/path/to/helm wins when set. Go output goes to a log file, printed on failure.
set -euo pipefail
version="${HELM_VERSION:-v4.3.2}"
if [[ -n "${HELM:-}" ]]; then echo "$HELM"; exit 0; fi
base="${MCS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcs}/bin/helm-${version}"
if [[ -x "$base/helm" ]]; then echo "$base/helm"; exit 0; fi
command -v go >/dev/null || { echo "helm: 'go' is not on PATH (install Go 1.25+ or set HELM)" >&2; exit 2; }
mkdir -p "$base"
log="$base/build.log"
echo "[mcs build] helm ${version}: compiling (log: $log)" >&2
if ! GOBIN="$base/.tmp" GOFLAGS=-trimpath CGO_ENABLED=0 \
    go install "helm.sh/helm/v4/cmd/helm@${version}" >"$log" 2>&1; then
  echo "[mcs build] helm: build failed, see $log" >&2; tail -n 20 "$log" >&2; exit 1
fi
mv "$base/.tmp/helm" "$base/helm" && rmdir "$base/.tmp"
echo "$base/helm"
