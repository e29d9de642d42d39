#!/usr/bin/env bash
# Build kube-apiserver and etcd (and optionally CoreDNS, whose kubernetes plugin
# serves the MCS zone natively) from their Go modules through the Go module proxy.
#
#   build-binaries.sh OUT_DIR KUBE_VERSION ETCD_VERSION [COREDNS_SRC_DIR COREDNS_VERSION]
#
# CoreDNS goes to OUT_DIR/coredns-vCOREDNS_VERSION/coredns, so that a version bump
# builds afresh.
#
# Each binary is built in its own throw-away wrapper module under OUT_DIR/.work
# and is skipped when already present in OUT_DIR.  Progress goes to stderr.
set -euo pipefail

out=$1 kube=$2 etcd=$3 coredns_src=${4:-} coredns=${5:-}
mkdir -p "$out/.work"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

step() { printf '[mcs build] %s\n' "$*" >&2; }

command -v go >/dev/null || { step "go: not found on PATH"; exit 127; }

if [ ! -x "$out/etcd" ]; then
  w="$out/.work/etcd"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  step "etcd v$etcd: resolving modules"
  go mod init example.invalid/etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$etcd" >&2
  step "etcd v$etcd: compiling"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp" "$out/etcd"
  step "etcd: done -> $out/etcd"
fi

if [ ! -x "$out/kube-apiserver" ]; then
  minor=$(echo "$kube" | cut -d. -f2); patch=$(echo "$kube" | cut -d. -f3)
  w="$out/.work/kube"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  step "kube-apiserver v$kube: resolving modules"
  go mod init example.invalid/kube-build >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v$kube" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
    go mod edit "-replace=$m=$m@v0.$minor.$patch"
  done
  go mod edit "-go=$(awk '$1=="go"{print $2; exit}' "$gomod")"
  grep '^godebug' "$gomod" >> go.mod || true
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$kube" >&2
  step "kube-apiserver v$kube: compiling (the long part: 10-20 min cold on 2 cores)"
  go build -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
  step "kube-apiserver: done -> $out/kube-apiserver"
fi

if [ -n "$coredns_src" ]; then
  [ -n "$coredns" ] || { step "coredns: COREDNS_VERSION missing"; exit 2; }
  dns_out="$out/coredns-v$coredns"
  if [ ! -x "$dns_out/coredns" ]; then
    w="$out/.work/coredns"; rm -rf "$w"; mkdir -p "$w" "$dns_out"; cp -r "$coredns_src"/. "$w"; cd "$w"
    step "coredns v$coredns: resolving modules"
    go mod edit "-require=github.com/coredns/coredns@v$coredns"
    go mod tidy >&2
    step "coredns v$coredns: compiling"
    go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=v$coredns" \
      -o "$dns_out/coredns.tmp" .
    mv "$dns_out/coredns.tmp" "$dns_out/coredns"
    step "coredns: done -> $dns_out/coredns"
  fi
fi
