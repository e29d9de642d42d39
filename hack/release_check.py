#!/usr/bin/env python3
"""``make release-check``: build the sdist, the wheel and the controller image, and check
that all three carry the one version, ``mcs.__version__`` (and that the kustomize base
pins the image of that version).

    hack/release_check.py [--skip-image] [--out DIR]

Reads only what the artifacts say of themselves: the sdist's ``PKG-INFO``, the wheel's
``*.dist-info/METADATA`` (and both file names), the image's OCI config label
``org.opencontainers.image.version``, its tag in ``index.json`` and the ``mcs-controller``
distribution installed inside its root filesystem. Exit 0 when they agree, else 1 with
one line per disagreement.
"""

from __future__ import annotations

import argparse
import email.parser
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "mcs-controller"
_NORMALIZED = DISTRIBUTION.replace("-", "_")  # how sdist and wheel file names spell it


def source_version(root: Path = ROOT) -> str:
    """``__version__`` from ``mcs/__init__.py``, read as text (nothing imported)."""
    found = re.search(r'^__version__ = "([^"]+)"', (root / "mcs/__init__.py").read_text(), re.M)
    if not found:
        raise SystemExit("release-check: no __version__ in mcs/__init__.py")
    return found.group(1)


def kustomize_tag(root: Path = ROOT) -> str | None:
    """The ``newTag`` of image ``mcs`` in ``manifests/kustomization.yaml``."""
    text = (root / "manifests/kustomization.yaml").read_text()
    found = re.search(r"-\s+name:\s+mcs\s*\n(?:\s+\w+:.*\n)*?\s+newTag:\s+\"?([^\"\s]+)", text)
    return found.group(1) if found else None


def _metadata(text: str) -> tuple[str, str]:
    msg = email.parser.Parser().parsestr(text, headersonly=True)
    return str(msg["Name"]), str(msg["Version"])


def sdist_version(path: Path) -> tuple[str, str]:
    """(Name, Version) of an sdist, from its top-level ``PKG-INFO``."""
    with tarfile.open(path) as tar:
        member = next(
            m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        data = tar.extractfile(member)
        assert data is not None
        return _metadata(data.read().decode())


def wheel_version(path: Path) -> tuple[str, str]:
    """(Name, Version) of a wheel, from its ``*.dist-info/METADATA``."""
    with zipfile.ZipFile(path) as whl:
        name = next(n for n in whl.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        return _metadata(whl.read(name).decode())


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    algo, hexa = digest.split(":", 1)
    data = tar.extractfile(f"./blobs/{algo}/{hexa}") or tar.extractfile(f"blobs/{algo}/{hexa}")
    assert data is not None
    return data.read()


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    for candidate in (f"./{name}", name):
        try:
            data = tar.extractfile(candidate)
        except KeyError:
            continue
        if data is not None:
            return data.read()
    raise KeyError(name)


def image_versions(path: Path) -> dict[str, str]:
    """What an OCI archive says its version is: the tag (``index.json``'s ref name), the
    config label, and the ``mcs-controller`` distribution installed in its layers."""
    out: dict[str, str] = {}
    with tarfile.open(path) as tar:
        index = json.loads(_member(tar, "index.json"))
        (manifest_ref,) = index["manifests"]
        ref = (manifest_ref.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if ref:
            out["image tag"] = ref
        manifest = json.loads(_blob(tar, manifest_ref["digest"]))
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        label = ((config.get("config") or {}).get("Labels") or {}).get(
            "org.opencontainers.image.version"
        )
        if label:
            out["image label"] = label
        for layer in manifest["layers"]:
            installed = _installed_in_layer(_blob(tar, layer["digest"]))
            if installed:
                out["image's installed distribution"] = installed
    return out


def _installed_in_layer(blob: bytes) -> str | None:
    """The version of the ``mcs_controller-*.dist-info`` a (possibly gzipped) layer holds."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
        for m in layer.getmembers():
            found = re.search(rf"site-packages/{_NORMALIZED}-([^/]+)\.dist-info/METADATA$", m.name)
            if found:
                return found.group(1)
    return None


def disagreements(expected: str, found: dict[str, str]) -> list[str]:
    """One line per artifact whose version is not ``expected``."""
    return [
        f"{what}: {version} (mcs.__version__ is {expected})"
        for what, version in found.items()
        if version != expected
    ]


def collect(sdist: Path, wheel: Path, image: Path | None) -> dict[str, str]:
    """Every version the artifacts state, by where it was read."""
    found: dict[str, str] = {}
    for what, path, read in (("sdist", sdist, sdist_version), ("wheel", wheel, wheel_version)):
        name, version = read(path)
        if name != DISTRIBUTION:
            found[f"{what} name {name!r}"] = "wrong distribution name"
        found[f"{what} metadata"] = version
        prefix = f"{_NORMALIZED}-"
        found[f"{what} file name"] = (
            path.name.removeprefix(prefix).split("-")[0].removesuffix(".tar.gz")
        )
    if image is not None:
        found.update(image_versions(image))
    tag = kustomize_tag()
    found["manifests/kustomization.yaml image tag"] = tag or "none"
    return found


def build(out: Path, with_image: bool) -> tuple[Path, Path, Path | None]:
    """The sdist and wheel (``python -m build``) and the image (hack/build-image.sh)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (sdist,) = out.glob(f"{_NORMALIZED}-*.tar.gz")
    (wheel,) = out.glob(f"{_NORMALIZED}-*.whl")
    image = None
    if with_image:
        image = out / "image.oci.tar"
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(
            ["bash", str(ROOT / "hack/build-image.sh"), str(image)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return sdist, wheel, image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-image", action="store_true", help="sdist and wheel only")
    parser.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    args = parser.parse_args(argv)
    expected = source_version()
    with tempfile.TemporaryDirectory(prefix="mcs-release-") as tmp:
        sdist, wheel, image = build(args.out or Path(tmp), not args.skip_image)
        found = collect(sdist, wheel, image)
    for what, version in found.items():
        print(f"release-check: {what}: {version}")
    wrong = disagreements(expected, found)
    if image is None and not args.skip_image:
        wrong.append("image: not built")
    for line in wrong:
        print(f"release-check: MISMATCH {line}", file=sys.stderr)
    print(f"release-check: {'FAILED' if wrong else 'ok'}: version {expected}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
