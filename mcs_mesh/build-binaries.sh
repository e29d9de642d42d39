#!/usr/bin/env bash
# Build one control-plane binary from its Go module through the Go module proxy.
#
#   build-binaries.sh TARGET OUT_DIR VERSION [SRC_DIR]
#
# SRC_DIR is the source folder of coredns and mcs-curl (a main module of our own).
# TARGET is etcd, kube-apiserver, kube-controller-manager, kube-scheduler, coredns or
# kwok; the executable goes to OUT_DIR/TARGET. The node binaries of a dataplane mesh
# (mcs_mesh/dataplane.py): kubelet and kube-proxy (same wrapper module as
# kube-apiserver), containerd (containerd, containerd-shim-runc-v2 and ctr), runc (cgo,
# with seccomp: needs gcc and libseccomp-dev), cni-plugins (bridge, host-local,
# loopback, portmap) and mcs-curl (a small curl for the example images); the ones that
# make several executables put them all in OUT_DIR and mark it with OUT_DIR/TARGET.
# mcs_mesh/binaries.py decides what to
# build and where (CoreDNS and kwok get a folder per version).
#
# Each binary is built in a throw-away wrapper module under WORK (env, default
# OUT_DIR/.work). The three kube-* binaries share one wrapper module (.work/kube),
# so after kube-apiserver the other two only resolve a few more packages, and
# Go's build cache turns their compilation into an incremental one.
#
# stdout carries only the phase, one line each ("resolving modules", "compiling");
# everything Go prints goes to stderr, which binaries.py sends to a log file.
set -euo pipefail

target=$1 out=$2 version=$3 src=${4:-}
work=${WORK:-$out/.work}
mkdir -p "$work" "$out"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

phase() { printf '%s\n' "$*"; printf '[mcs build] %s: %s\n' "$target" "$*" >&2; }

command -v go >/dev/null || { echo "go: not found on PATH" >&2; exit 127; }

# A k8s.io/kubernetes wrapper module: k8s.io/kubernetes pins its staging modules
# (k8s.io/api, ...) at v0.0.0 with replace directives that only work inside its
# repository, so the wrapper replaces each with the matching v0.MINOR.PATCH tag.
kube_module() {
  local w="$work/kube" minor patch gomod
  minor=$(echo "$version" | cut -d. -f2); patch=$(echo "$version" | cut -d. -f3)
  if [ -f "$w/go.mod" ] && grep -q "k8s.io/kubernetes v$version" "$w/go.mod"; then
    cd "$w"; return
  fi
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init example.invalid/kube-build >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v$version" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
    go mod edit "-replace=$m=$m@v0.$minor.$patch"
  done
  go mod edit "-go=$(awk '$1=="go"{print $2; exit}' "$gomod")"
  grep '^godebug' "$gomod" >> go.mod || true
}

tmp="$out/$target.tmp"
case "$target" in
  etcd)
    w="$work/etcd"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
    phase "resolving modules"
    go mod init example.invalid/etcd-build >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$version" >&2
    phase "compiling"
    go build -trimpath -ldflags "-s -w" -o "$tmp" go.etcd.io/etcd/server/v3 >&2
    ;;
  kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy)
    phase "resolving modules"
    kube_module
    go get "k8s.io/kubernetes/cmd/$target@v$version" >&2
    minor=$(echo "$version" | cut -d. -f2)
    phase "compiling"
    go build -trimpath -tags selinux,notest,grpcnotrace \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      -o "$tmp" "k8s.io/kubernetes/cmd/$target" >&2
    ;;
  coredns)
    w="$work/coredns"; rm -rf "$w"; mkdir -p "$w"; cp -r "$src"/. "$w"; cd "$w"
    phase "resolving modules"
    go mod edit "-require=github.com/coredns/coredns@v$version"
    go mod tidy >&2
    phase "compiling"
    go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=v$version" \
      -o "$tmp" . >&2
    ;;
  kwok)
    w="$work/kwok"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
    phase "resolving modules"
    go mod init example.invalid/kwok-build >/dev/null 2>&1
    go get "sigs.k8s.io/kwok/cmd/kwok@v$version" >&2
    phase "compiling"
    go build -trimpath -ldflags "-s -w" \
      -o "$tmp" sigs.k8s.io/kwok/cmd/kwok >&2
    # kwok runs what its Stage configuration says; ship upstream's "fast" node and pod
    # stages (what kwokctl configures by default) of the same version next to it
    src=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    mkdir -p "$out/stages"
    cp "$src"/kustomize/stage/node/fast/node-initialize.yaml \
      "$src"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      "$src"/kustomize/stage/pod/fast/pod-ready.yaml "$src"/kustomize/stage/pod/fast/pod-complete.yaml \
      "$src"/kustomize/stage/pod/fast/pod-delete.yaml "$out/stages/"
    chmod 644 "$out"/stages/*.yaml
    ;;
  containerd)
    # no replace directives in containerd's go.mod: go install works; static, as upstream
    phase "compiling"
    rm -rf "$tmp.d"; mkdir -p "$tmp.d"
    GOBIN="$tmp.d" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$version" \
      "github.com/containerd/containerd/v2/cmd/containerd@v$version" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$version" \
      "github.com/containerd/containerd/v2/cmd/ctr@v$version" >&2
    mv "$tmp.d/containerd-shim-runc-v2" "$tmp.d/ctr" "$out/"; mv "$tmp.d/containerd" "$tmp"
    rmdir "$tmp.d"
    ;;
  runc)
    # containerd gives every sandbox a seccomp profile: runc needs libseccomp (cgo)
    [ -f /usr/include/seccomp.h ] || { echo "runc needs libseccomp-dev (apt-get install libseccomp-dev)" >&2; exit 2; }
    command -v gcc >/dev/null || { echo "runc needs gcc (apt-get install gcc)" >&2; exit 2; }
    phase "compiling"
    rm -rf "$tmp.d"; mkdir -p "$tmp.d"
    CGO_ENABLED=1 GOBIN="$tmp.d" go install -trimpath -tags seccomp \
      -ldflags "-s -w -X main.version=$version" "github.com/opencontainers/runc@v$version" >&2
    mv "$tmp.d/runc" "$tmp"; rmdir "$tmp.d"
    ;;
  cni-plugins)
    phase "compiling"
    rm -rf "$tmp.d"; mkdir -p "$tmp.d"
    p=github.com/containernetworking/plugins/plugins
    GOBIN="$tmp.d" go install -trimpath -ldflags "-s -w" \
      "$p/main/bridge@v$version" "$p/ipam/host-local@v$version" \
      "$p/main/loopback@v$version" "$p/meta/portmap@v$version" >&2
    mv "$tmp.d"/* "$out/"; rmdir "$tmp.d"
    printf 'cni-plugins v%s\n' "$version" > "$tmp"; chmod +x "$tmp"
    ;;
  mcs-curl)
    # the example images' curl: a small static Go program (mcs_mesh/images/curl)
    w="$work/mcs-curl"; rm -rf "$w"; mkdir -p "$w"; cp -r "$src"/. "$w"; cd "$w"
    phase "compiling"
    go build -trimpath -ldflags "-s -w" -o "$tmp" . >&2
    ;;
  *)
    echo "unknown target $target" >&2; exit 2 ;;
esac
mv "$tmp" "$out/$target"
phase "done"
