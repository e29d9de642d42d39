"""Release hygiene: one version everywhere (``mcs.__version__``), ``--version`` of both
commands, the version in ``mcs status``, and the pieces of ``hack/release_check.py``
(``make release-check``) on artifacts made here."""

from __future__ import annotations

import importlib.util
import io
import json
import platform
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import mcs
from mcs.commands import cli, kubectl_plugin
from mcs.commands.version import DISTRIBUTION, version_text
from mcs.status import render_text
from mcs.status.collect import Snapshot
from mcs.status.report import summarize

ROOT = Path(__file__).resolve().parents[2]


def _release_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_check", ROOT / "hack/release_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rc = _release_check()


def test_pyproject_reads_the_one_version_and_the_free_name() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == DISTRIBUTION == "mcs-controller"
    assert project["project"]["dynamic"] == ["version"]
    assert "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mcs.__version__"}
    assert project["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()
    scripts = project["project"]["scripts"]
    assert set(scripts) == {"mcs", "kubectl-mcs"}
    assert f"{DISTRIBUTION}[mesh]" in project["project"]["optional-dependencies"]["dev"]


def test_changelog_has_this_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(mcs.__version__)}\] - \d{{4}}-\d\d-\d\d$", text, re.M)
    assert f"[{mcs.__version__}]: " in text


def test_no_install_hint_names_the_wrong_distribution() -> None:
    """`pip install mcs` installs an unrelated project: no hint may send users there."""
    wrong = re.compile(r"pip[x]? install\s+['\"]?mcs(\[|['\"\s]|$)", re.M)
    files = [
        *ROOT.joinpath("mcs").rglob("*.py"),
        *ROOT.joinpath("mcs_mesh").rglob("*.py"),
        *ROOT.joinpath("hack").rglob("*"),
        *ROOT.joinpath("docs").rglob("*.md"),
        ROOT / "Makefile",
        ROOT / "Dockerfile",
        ROOT / "manifests/README.md",
    ]
    hits = [
        f"{p.relative_to(ROOT)}: {m.group()!r}"
        for p in files
        if p.is_file()
        for m in wrong.finditer(p.read_text(errors="replace"))
    ]
    assert hits == []
    install = (ROOT / "hack/image/install.sh").read_text()
    assert f"--only-binary :all: {DISTRIBUTION}\n" in install


def test_version_text_names_release_python_and_client() -> None:
    text = version_text()
    assert text.startswith(f"mcs {mcs.__version__} (mcs-controller; ")
    assert f"Python {platform.python_version()}" in text
    assert re.search(r"kubernetes-asyncio \d+\.\d+", text)
    assert version_text("kubectl mcs").startswith(f"kubectl mcs {mcs.__version__} ")


@pytest.mark.parametrize(
    ("parser", "prog"), [(cli.build_parser, "mcs"), (kubectl_plugin.build_parser, "kubectl mcs")]
)
def test_version_flag(parser: object, prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parser().parse_args(["--version"])  # type: ignore[operator]
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == version_text(prog)


def test_mcs_version_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcs", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"mcs {mcs.__version__} ")


def test_status_carries_the_version() -> None:
    report = summarize(Snapshot(()))
    assert report.model_dump(mode="json")["version"] == mcs.__version__
    assert render_text(report, color=False).splitlines()[0] == f"mcs {mcs.__version__}"


# ------------------------------------------------------------------ hack/release_check.py


def _sdist(path: Path, name: str, version: str) -> Path:
    pkg = f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n\n".encode()
    top = f"{name.replace('-', '_')}-{version}"
    out = path / f"{top}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for member in (f"{top}/PKG-INFO", f"{top}/mcs_controller.egg-info/PKG-INFO"):
            info = tarfile.TarInfo(member)
            info.size = len(pkg)
            tar.addfile(info, io.BytesIO(pkg))
    return out


def _wheel(path: Path, name: str, version: str) -> Path:
    stem = f"{name.replace('-', '_')}-{version}"
    out = path / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as whl:
        whl.writestr("mcs/__init__.py", "")
        whl.writestr(f"{stem}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n\n")
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _image(path: Path, tag: str, label: str, installed: str) -> Path:
    """An OCI archive as umoci and tar make it (``./``-prefixed members, gzipped layer)."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w:gz") as layer:
        site = "opt/mcs/lib/python3.11/site-packages"
        _add(layer, f"{site}/mcs_controller-{installed}.dist-info/METADATA", b"Name: x\n")
    blobs: dict[str, bytes] = {"layer": layer_buf.getvalue()}
    config = {"config": {"Labels": {"org.opencontainers.image.version": label}}}
    blobs["config"] = json.dumps(config).encode()
    manifest = {"config": {"digest": "sha256:config"}, "layers": [{"digest": "sha256:layer"}]}
    blobs["manifest"] = json.dumps(manifest).encode()
    index = {
        "manifests": [
            {
                "digest": "sha256:manifest",
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ]
    }
    out = path / "image.oci.tar"
    with tarfile.open(out, "w") as tar:
        _add(tar, "./index.json", json.dumps(index).encode())
        for name, data in blobs.items():
            _add(tar, f"./blobs/sha256/{name}", data)
    return out


def test_reads_each_artifacts_own_version(tmp_path: Path) -> None:
    assert rc.sdist_version(_sdist(tmp_path, "mcs-controller", "0.2.0")) == (
        "mcs-controller",
        "0.2.0",
    )
    assert rc.wheel_version(_wheel(tmp_path, "mcs-controller", "0.2.1")) == (
        "mcs-controller",
        "0.2.1",
    )
    assert rc.image_versions(_image(tmp_path, "0.2.0", "0.2.2", "0.2.3")) == {
        "image tag": "0.2.0",
        "image label": "0.2.2",
        "image's installed distribution": "0.2.3",
    }


def test_agreeing_artifacts_pass_and_each_disagreement_is_named(tmp_path: Path) -> None:
    v = rc.source_version()
    assert v == mcs.__version__
    assert rc.kustomize_tag() == v  # the kustomize base pins this release's image
    (tmp_path / "ok").mkdir()
    good = rc.collect(
        _sdist(tmp_path / "ok", "mcs-controller", v),
        _wheel(tmp_path / "ok", "mcs-controller", v),
        _image(tmp_path / "ok", v, v, v),
    )
    assert len(good) == 8
    assert rc.disagreements(v, good) == []
    bad = rc.collect(
        _sdist(tmp_path, "mcs-controller", v),
        _wheel(tmp_path, "mcs-controller", "9.9.9"),
        _image(tmp_path, v, "9.9.8", v),
    )
    wrong = rc.disagreements(v, bad)
    assert wrong == [
        f"wheel metadata: 9.9.9 (mcs.__version__ is {v})",
        f"wheel file name: 9.9.9 (mcs.__version__ is {v})",
        f"image label: 9.9.8 (mcs.__version__ is {v})",
    ]


def test_a_wrong_distribution_name_fails(tmp_path: Path) -> None:
    v = rc.source_version()
    found = rc.collect(_sdist(tmp_path, "mcs", v), _wheel(tmp_path, "mcs-controller", v), None)
    assert rc.disagreements(v, found) != []


def test_the_dockerfile_build_has_every_file_the_wheel_needs() -> None:
    """The Dockerfile builds the wheel from what it copies: the license file pyproject
    names must be copied and not left out by .dockerignore (the build fails otherwise)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.search(r"^COPY (pyproject\.toml .*) \./$", dockerfile, re.M)
    assert copied is not None
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for name in [*project["license-files"], project["readme"]]:
        assert name in copied.group(1).split(), name
        assert name in allowed, name


def test_build_info_metric_names_this_release() -> None:
    from mcs.core.merge import MERGE_RULES
    from mcs.runtime.observability import REGISTRY

    labels = {
        "version": mcs.__version__,
        "merge_rules": MERGE_RULES,
        "python_version": platform.python_version(),
        "kubernetes_asyncio_version": version_text()
        .rsplit("kubernetes-asyncio ", 1)[1]
        .rstrip(")"),
    }
    [sample] = [s for m in REGISTRY.collect() if m.name == "mcs_build" for s in m.samples]
    assert labels.items() <= sample.labels.items()
