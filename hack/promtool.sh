#!/usr/bin/env bash
# Print the path of promtool, building it first from its Go module (through the Go module
# proxy) into the same cache as the control-plane binaries when it is not there yet.
#   hack/promtool.sh            -> /root/.cache/mcs/bin/promtool-v0.316.0/promtool
# PROMTOOL=/path/to/promtool wins when set. Go output goes to a log file, printed on failure.
set -euo pipefail
version="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"   # the Go module of Prometheus 3.16.0
if [[ -n "${PROMTOOL:-}" ]]; then echo "$PROMTOOL"; exit 0; fi
base="${MCS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcs}/bin/promtool-${version}"
if [[ -x "$base/promtool" ]]; then echo "$base/promtool"; exit 0; fi
command -v go >/dev/null || { echo "promtool: 'go' is not on PATH (install Go 1.24+ or set PROMTOOL)" >&2; exit 2; }
mkdir -p "$base"
log="$base/build.log"
echo "[mcs build] promtool ${version}: compiling (log: $log)" >&2
if ! GOBIN="$base/.tmp" GOFLAGS=-trimpath CGO_ENABLED=0 \
    go install "github.com/prometheus/prometheus/cmd/promtool@${version}" >"$log" 2>&1; then
  echo "[mcs build] promtool: build failed, see $log" >&2; tail -n 20 "$log" >&2; exit 1
fi
mv "$base/.tmp/promtool" "$base/promtool" && rmdir "$base/.tmp"
echo "$base/promtool"
