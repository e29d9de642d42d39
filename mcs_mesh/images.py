"""Container images built on this machine, without a registry or Docker.

One layer (Debian's static busybox with its applets, and ``mcs-curl`` as ``curl``) and
three images on it, written as one docker archive that ``ctr images import`` reads:

* ``localhost/mcs/pause:1`` - the pod sandbox (containerd's ``pinned_images.sandbox``);
* ``localhost/mcs/rebel-base:1`` - the Cilium tutorial's server: busybox ``httpd`` on
  port 80 serving ``/usr/share/nginx/html`` (where the tutorial mounts its
  ``rebel-base-response`` ConfigMap as ``index.html``);
* ``localhost/mcs/x-wing:1`` - the client: ``curl``, ``nc``, ``nslookup``, ``wget`` and a
  shell; like the tutorial's ``cilium/json-mock`` it also answers on port 80 (its probes
  curl ``localhost``).

Every entrypoint exits on SIGTERM (a PID 1 without a handler would ignore it and make
every pod deletion wait its whole grace period).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PAUSE = "localhost/mcs/pause:1"
REBEL_BASE = "localhost/mcs/rebel-base:1"
X_WING = "localhost/mcs/x-wing:1"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FOREVER = "trap 'exit 0' TERM; sleep 2147483647 & wait"

_HTTPD = "trap 'exit 0' TERM; httpd -f -p 80 -h /usr/share/nginx/html & wait"

#: image name -> (entrypoint, exposed port or None)
IMAGES: dict[str, tuple[list[str], str | None]] = {
    PAUSE: (["/bin/sh", "-c", _FOREVER], None),
    # the tutorial's nginx: port 80, the ConfigMap mounted as its index.html
    REBEL_BASE: (["/bin/sh", "-c", _HTTPD], "80/tcp"),
    # the tutorial's x-wing (cilium/json-mock) also answers on port 80: its probes curl it
    X_WING: (["/bin/sh", "-c", _HTTPD], "80/tcp"),
}


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o755,
         link: str | None = None, directory: bool = False) -> None:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.mode = mode
    if directory:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def layer(curl: Path) -> bytes:
    """The shared root filesystem, as an uncompressed tar."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "etc", "usr", "usr/bin", "usr/share", "usr/share/nginx",
                  "usr/share/nginx/html", "tmp", "var", "proc", "sys", "dev", "root"):  # fmt: skip
            _add(tar, d, directory=True, mode=0o1777 if d == "tmp" else 0o755)
        _add(tar, "bin/busybox", data=BUSYBOX.read_bytes())
        for a in sorted(set(applets) - {"busybox", "curl"}):
            _add(tar, f"bin/{a}", link="busybox")
        _add(tar, "usr/bin/curl", data=curl.read_bytes())
        _add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644)
        _add(tar, "etc/group", data=b"root:x:0:\n", mode=0o644)
        _add(
            tar,
            "usr/share/nginx/html/index.html",
            data=b'{"Galaxy": "Alderaan", "Cluster": "unknown"}\n',
            mode=0o644,
        )
    return buf.getvalue()


def build_archive(
    curl: Path,
    out: Path,
    images: dict[str, tuple[list[str], str | None]] | None = None,
) -> Path:
    """Write the docker archive of ``images`` (default :data:`IMAGES`) to ``out``.
    (A stand-in for a third-party image is the same layer under that image's name.)"""
    images = IMAGES if images is None else images
    rootfs = layer(curl)
    diff = hashlib.sha256(rootfs).hexdigest()
    manifest = []
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, f"{diff}/layer.tar", data=rootfs, mode=0o644)
        for name, (entrypoint, port) in images.items():
            config: dict[str, object] = {
                "architecture": "amd64",
                "os": "linux",
                "created": "1970-01-01T00:00:00Z",
                "config": {
                    "Entrypoint": entrypoint,
                    "Env": [PATH_ENV],
                    "WorkingDir": "/",
                    **({"ExposedPorts": {port: {}}} if port else {}),
                },
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "mcs mesh"}],
            }
            raw = json.dumps(config, sort_keys=True).encode()
            cfg_name = f"{hashlib.sha256(raw).hexdigest()}.json"
            _add(tar, cfg_name, data=raw, mode=0o644)
            manifest.append(
                {"Config": cfg_name, "RepoTags": [name], "Layers": [f"{diff}/layer.tar"]}
            )
        _add(tar, "manifest.json", data=json.dumps(manifest).encode(), mode=0o644)
    tmp.replace(out)
    return out
