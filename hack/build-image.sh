#!/usr/bin/env bash
# Builds the mcs controller image without Docker: a Debian bookworm root filesystem
# (mmdebstrap, Debian packages only), mcs installed into it from wheels built here,
# packed as an OCI image (umoci) into an OCI archive (a tar of an OCI image layout,
# which `podman load`, `skopeo copy oci-archive:...` and `ctr import` read).
#   hack/build-image.sh [OUT]      default OUT: dist/mcs-<version>.oci.tar
# Needs: mmdebstrap, umoci (apt-get install mmdebstrap umoci), python3 >= 3.11 with pip.
# The Dockerfile runs the same hack/image/install.sh, so both images hold the same files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n "s/^__version__ = \"\(.*\)\"/\1/p" "$root/mcs/__init__.py" | head -1)
out=$(realpath -m "${1:-$root/dist/mcs-$version.oci.tar}")
python=${PYTHON:-python3}
suite=bookworm     # its python3 is 3.11, the version mcs is tested with
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
missing=()
for tool in mmdebstrap umoci; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[mcs image] installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "build-image: ${missing[*]} missing: apt-get install mmdebstrap umoci" >&2; exit 2
  fi
fi
# Reproducible: file times and the image's dates come from the last commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
work=$(mktemp -d "${TMPDIR:-/tmp}/mcs-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { echo "[mcs image] $*" >&2; }

say "wheels: mcs-controller $version and its dependencies (no mesh extra)"
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$work/wheels" \
  "$root" pip >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; exit 1; }

say "root filesystem: Debian $suite + python3 (mmdebstrap)"
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --include=python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="mkdir -p \"\$1/wheels\" && cp $work/wheels/*.whl \"\$1/wheels/\"" \
  --customize-hook="chroot \"\$1\" sh -s < $root/hack/image/install.sh" \
  --customize-hook="rm -rf \"\$1/wheels\" && mkdir -p \"\$1/usr/share/mcs\" && cp -r $root/crds \"\$1/usr/share/mcs/crds\"" \
  "$suite" "$work/rootfs.tar" "$mirror" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -n 40 "$work/mmdebstrap.log" >&2; exit 1; }

say "OCI image (umoci)"
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" "$work/rootfs.tar"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
umoci config --image "$layout:$version" --created "$created" --history.created "$created" \
  --config.user 65532:65532 --config.workingdir / \
  --config.env PATH=/opt/mcs/bin:/usr/local/bin:/usr/bin:/bin \
  --config.env PYTHONUNBUFFERED=1 --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.entrypoint mcs --config.cmd run \
  --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
  --config.label org.opencontainers.image.title=mcs \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.licenses=Apache-2.0
umoci gc --layout "$layout"
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$layout" -cf "$out" .
say "done: $out ($(du -h "$out" | cut -f1)), tag $version"
echo "$out"
