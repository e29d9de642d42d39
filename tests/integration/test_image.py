"""The controller image, built here without Docker (hack/build-image.sh: mmdebstrap +
umoci into an OCI archive) and run: its entry point answers ``--help``, and ``mcs run``
from the image reconciles the mesh.

No container runtime works in this sandbox (crun 1.8 refuses the host's hybrid
cgroup v1/v2 layout: "cgroups in hybrid mode not supported"), so the image runs the
way a runtime would set it up, by hand: its layer unpacked, its root filesystem
mounted read-only in a private mount and PID namespace (``unshare``), ``/proc`` and a
tmpfs ``/tmp`` (the Deployment's emptyDir), then ``chroot`` as the image's user with
exactly the image's environment, entry point and command. The host network is shared,
as with ``hostNetwork``, so the controller reaches the mesh on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.processes import die_with_parent
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Kubectl, _http_ok, eventually, free_port
from tests.integration.mcs_objects import condition_status, export, get_import, service

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.tools
REF = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Image:
    rootfs: Path
    config: dict[str, Any]  # the OCI image config's "config": User, Env, Entrypoint, Cmd


def _blob(layout: Path, digest: str) -> Any:
    algo, hexdigest = digest.split(":")
    return json.loads((layout / "blobs" / algo / hexdigest).read_text())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    if os.geteuid() != 0:
        pytest.fail(
            "building and running the image root filesystem needs root (mount, chroot): "
            "run the image tests as root (as CI does), or deselect them with "
            "-k 'not test_image' knowingly; the suite's rule is never a skip"
        )
    work = tmp_path_factory.mktemp("image")
    given = os.environ.get("MCS_IMAGE_ARCHIVE")  # an archive built before, to iterate faster
    archive = Path(given) if given else work / "mcs.oci.tar"
    if not given:
        started = time.monotonic()
        built = subprocess.run(
            ["bash", str(ROOT / "hack" / "build-image.sh"), str(archive)],
            capture_output=True,
            text=True,
            timeout=30 * 60,
            check=False,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        took = time.monotonic() - started
        print(f"image built in {took:.0f}s: {archive.stat().st_size >> 20} MiB")
    layout = work / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layout)], check=True, timeout=300)
    [desc] = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = _blob(layout, desc["digest"])
    config = _blob(layout, manifest["config"]["digest"])
    bundle = work / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{desc['annotations'][REF]}", str(bundle)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return Image(bundle / "rootfs", config["config"])


def _in_image(img: Image, args: list[str], binds: dict[str, Path] | None = None) -> list[str]:
    """The command line that runs ``args`` as the image would: read-only root, /proc,
    tmpfs /tmp, the image's user and environment; ``binds`` maps paths inside to files
    outside (mounted read-only, like a Secret)."""
    root = str(img.rootfs)
    lines = ["set -e", f"mount --bind {root} {root}"]
    for inside, outside in (binds or {}).items():
        target = f"{root}{inside}"
        lines += [f"mkdir -p $(dirname {target})", f"touch {target}"]
        lines += [f"mount --bind {outside} {target}", f"mount -o remount,bind,ro {target}"]
    lines += [
        f"mount -o remount,bind,ro {root}",
        f"mount -t proc proc {root}/proc",
        f"mount -t tmpfs -o size=16m tmpfs {root}/tmp",
        'exec chroot --userspec="$USERSPEC" "$ROOTFS" env -i "$@"',
    ]
    user = img.config["User"]
    env = [*img.config["Env"], "HOME=/nonexistent"]
    return [
        "unshare", "--mount", "--pid", "--fork", "--propagation", "private",
        "env", f"USERSPEC={user}", f"ROOTFS={root}",
        "sh", "-c", "\n".join(lines), "sh", *env, *args,
    ]  # fmt: skip


def test_image_config_and_content(image: Image) -> None:
    cfg = image.config
    assert cfg["User"] == "65532:65532"
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["mcs"], ["run"])
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    site = next((image.rootfs / "opt/mcs/lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"mcs_controller", "rich", "kubernetes_asyncio", "aiohttp"} <= installed
    # The runtime image leaves out the mesh tooling's extra and pip.
    assert not installed & {"cryptography", "dnspython", "pip"}, installed
    assert (image.rootfs / "usr/share/mcs/crds/serviceexports.yaml").is_file()


def test_entry_point_help_as_the_images_user(image: Image) -> None:
    args = [*image.config["Entrypoint"], "--help"]
    out = subprocess.run(
        _in_image(image, args), capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "{mesh,run,status}" in out.stdout
    whoami = subprocess.run(
        _in_image(image, ["python3", "-c", "import os; print(os.getuid(), os.getgid())"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert whoami.stdout.split() == ["65532", "65532"]
    write = "import os; os.mkdir('/tmp/ok'); open('/tmp/ok/f', 'w'); open('/opt/mcs/f', 'w')"
    readonly = subprocess.run(
        _in_image(image, ["python3", "-c", write]), capture_output=True, text=True, timeout=60
    )
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr
    mesh = subprocess.run(
        _in_image(image, ["mcs", "mesh", "up"]), capture_output=True, text=True, timeout=60
    )
    assert mesh.returncode == 2
    assert "needs the mesh extra" in mesh.stderr and "Traceback" not in mesh.stderr


@pytest.fixture
def controller_in_image(image: Image, accounts: ServiceAccounts, tmp_path: Path) -> Iterator[str]:
    # Readable by the image's user, as a Secret volume with fsGroup makes it; the central
    # writer's tokens, as the Deployment would mount them.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(accounts.central, kubeconfig)
    kubeconfig.chmod(0o644)
    metrics, health = free_port(), free_port()
    args = [
        *image.config["Entrypoint"], *image.config["Cmd"],
        "--kubeconfig", "/etc/mcs/kubeconfig",
        "--metrics-bind-address", f"127.0.0.1:{metrics}",
        "--health-probe-bind-address", f"127.0.0.1:{health}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        _in_image(image, args, {"/etc/mcs/kubeconfig": kubeconfig}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # a killed pytest leaves no controller behind
    )
    url = f"http://127.0.0.1:{health}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                assert proc.stdout is not None
                raise RuntimeError(f"mcs run exited: {proc.stdout.read().decode()[-3000:]}")
            return _http_ok(f"{url}/readyz")

        eventually(ready, timeout=60, what="the image's controller ready")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_mcs_run_from_the_image_reconciles(
    controller_in_image: str, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("cluster1", "apply", "-f", "-", stdin=service(namespace))
    kubectl("cluster1", "apply", "-f", "-", stdin=export(namespace))
    imp = eventually(lambda: get_import(kubectl, "cluster2", namespace), what="import")
    assert imp["status"]["clusters"] == [{"cluster": "cluster1"}]
    eventually(lambda: condition_status(kubectl, "cluster1", namespace, "Valid") == "True")
