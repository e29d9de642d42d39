"""The user documentation cannot drift from the code.

* every ``mcs ...`` and ``kubectl mcs ...`` command in a code block of README.md,
  docs/, manifests/README.md, the examples' READMEs and bench/HISTORY.md parses with
  the real argparse parsers (real subcommands, real flags, valid choices);
* every relative link in those files names a file that exists (and, for a
  Markdown file, a heading that exists when it names an anchor);
* docs/reference/ is what ``hack/gen-reference.py`` generates from the code.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcs.commands import cli, kubectl_plugin
from mcs.commands.runflags import DEPRECATED_FLAGS

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "ARCHITECTURE.md",
        ROOT / "manifests" / "README.md",
        ROOT / "bench" / "HISTORY.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "examples").glob("*/README.md"),
    ]
)

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
_PROGRAM = re.compile(r"^(?:\$ |sudo )?(?:\S*/)?(mcs|kubectl mcs|kubectl-mcs)(?= |$)")
_SHELL_END = {"|", "||", "&&", ";", "&", ">", ">>", "2>&1", "<"}
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _code_lines(path: Path) -> Iterator[str]:
    """Lines of the fenced code blocks, continuation lines joined."""
    for block in _FENCE.findall(path.read_text()):
        yield from block.replace("\\\n", " ").splitlines()


def commands(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(program, argv) of every mcs / kubectl mcs command in ``path``'s code blocks."""
    for line in _code_lines(path):
        for part in re.split(r"\s*(?:&&|;|\|\||\|)\s*", line.strip()):
            m = _PROGRAM.match(part)
            if not m:
                continue
            words = shlex.split(part[m.end() :], comments=True)
            argv = []
            for word in words:
                if word in _SHELL_END or word.startswith((">", "2>")):
                    break
                argv.append(word)
            yield ("mcs" if m.group(1) == "mcs" else "kubectl mcs"), argv


def _parse(program: str, argv: list[str]) -> str | None:
    """None if ``argv`` parses, else argparse's complaint."""
    parser = cli.build_parser() if program == "mcs" else kubectl_plugin.build_parser()
    if "-h" in argv or "--help" in argv:
        argv = [a for a in argv if a not in ("-h", "--help")] or ["--help"]
        if argv == ["--help"]:
            return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    return None


def all_commands() -> list[tuple[str, str, list[str]]]:
    return [(str(p.relative_to(ROOT)), prog, argv) for p in DOCS for prog, argv in commands(p)]


def test_the_docs_hold_commands() -> None:
    """The scan finds the commands (so the check below cannot pass vacuously)."""
    found = all_commands()
    assert len(found) >= 20
    assert {prog for _, prog, _ in found} == {"mcs", "kubectl mcs"}
    assert any(argv[:1] == ["run"] for _, prog, argv in found if prog == "mcs")


@pytest.mark.parametrize(
    ("doc", "program", "argv"), all_commands(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_documented_command_parses(doc: str, program: str, argv: list[str]) -> None:
    problem = _parse(program, argv)
    assert problem is None, f"{doc}: `{program} {shlex.join(argv)}`: {problem}"
    old = [a for a in argv if a.split("=")[0] in DEPRECATED_FLAGS]
    assert not old, (
        f"{doc}: deprecated {old}: use {[DEPRECATED_FLAGS[a.split('=')[0]] for a in old]}"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--no-such-flag"],
        ["statuss"],
        ["status", "-o", "text2"],
        ["mesh", "up", "--clusterz", "3"],
    ],
)
def test_the_parse_check_fails_on_a_wrong_command(argv: list[str]) -> None:
    assert _parse("mcs", argv) is not None


def test_the_deprecated_flag_names_are_known() -> None:
    """The docs check refuses them (they still parse, hidden, for one release)."""
    assert "--metrics-addr" in DEPRECATED_FLAGS
    assert _parse("mcs", ["run", "--metrics-addr", ":9090"]) is None


def test_a_wrong_kubectl_mcs_command_fails() -> None:
    assert _parse("kubectl mcs", ["export"]) is not None
    assert _parse("kubectl mcs", ["explain", "svc", "--bogus"]) is not None
    assert _parse("kubectl mcs", ["explain", "svc", "--context", "c2"]) is None


def test_commands_are_found_in_code_blocks_only(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "Run mcs status --bogus in prose.\n\n```sh\n$ mcs status -o json | jq .\n"
        "kubectl mcs export web \\\n  --timeout 5  # wait\nkubectl get pods\n```\n"
    )
    assert list(commands(doc)) == [
        ("mcs", ["status", "-o", "json"]),
        ("kubectl mcs", ["export", "web", "--timeout", "5"]),
    ]


# ------------------------------------------------------------------------ links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def links(path: Path) -> Iterator[str]:
    text = _FENCE.sub("", path.read_text())
    for m in _LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if not re.match(r"^[a-z]+:", target):
            yield target


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    assert broken_links(doc) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Some `Title` here\n")
    doc = tmp_path / "a.md"
    doc.write_text(
        "[ok](b.md) [ok](b.md#some-title-here) [web](https://x.y/z) [self](#top)\n"
        "# Top\n[gone](c.md) [bad anchor](b.md#nope)\n"
    )
    assert broken_links(doc) == ["c.md", "b.md#nope"]


def test_the_docs_link_their_pages() -> None:
    """README.md links every page of docs/ (directly or through docs/ itself)."""
    linked = {(doc.parent / t.partition("#")[0]).resolve() for doc in DOCS for t in links(doc)}
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert pages and pages <= linked, sorted(str(p) for p in pages - linked)


# -------------------------------------------------------------------- reference


def test_the_reference_is_generated_from_the_code() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]


# ------------------------------------------------------------------------ README


def test_the_readme_stays_short_and_keeps_its_figures() -> None:
    """README.md: at most ~200 lines, CI's test command (.ci/run runs `make test`), and a
    Figures section whose every row names the command that produced it."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", text, re.M), "the quick start shows CI's test command"
    figures = text.split("\n## Figures\n", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in figures.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) >= 5
    for row in rows:
        command = row.rstrip(" |").rsplit("|", 1)[1]
        assert re.search(r"`[^`]+`", command), f"no command for: {row}"


# ----------------------------------------------------------------------- metrics

_METRIC = re.compile(r"`((?:mcs|workqueue|controller_runtime|leader_election)_[a-z0-9_]+)[`{]")


def metric_names(path: Path) -> set[str]:
    """Metric names the text quotes (in backticks, possibly with their labels); not the
    repository's own folders (`mcs_mesh`)."""
    return {n for n in _METRIC.findall(path.read_text()) if not (ROOT / n).exists()}


def test_the_docs_name_only_metrics_the_controller_exports() -> None:
    reference = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    exported = set(re.findall(r"^\| `([a-z0-9_]+)` \|", reference, re.M))
    assert "mcs_cluster_connected" in exported
    pages = [p for p in DOCS if p.name != "HISTORY.md" and "reference" not in p.parts]
    unknown = {
        (str(p.relative_to(ROOT)), name)
        for p in pages
        for name in metric_names(p)
        if re.sub(r"_(bucket|sum|count)$", "", name) not in exported
    }
    assert not unknown, sorted(unknown)


def test_metric_names_are_found(tmp_path: Path) -> None:
    doc = tmp_path / "m.md"
    doc.write_text("`mcs_ready`, `mcs_member_withdrawn{cluster}` and `mcs_mesh/cli.py`\n")
    assert metric_names(doc) == {"mcs_ready", "mcs_member_withdrawn"}


def test_every_alert_is_documented_where_its_runbook_url_points() -> None:
    """Each alert the manifests ship has a section (a heading named after it) in
    docs/operations.md or docs/runbooks.md, and its ``runbook_url``, if any, names a file
    and heading that exist."""
    import yaml

    rules = yaml.safe_load((ROOT / "manifests/monitoring/prometheusrule.yaml").read_text())
    alerts = {
        r["alert"]: (r.get("annotations") or {}).get("runbook_url", "")
        for g in rules["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert alerts
    guides = [ROOT / "docs" / n for n in ("operations.md", "runbooks.md")]
    documented = {
        h for g in guides if g.exists() for h in re.findall(r"^#+ (MCS\w+)$", g.read_text(), re.M)
    }
    assert set(alerts) <= documented, sorted(set(alerts) - documented)
    for alert, url in alerts.items():
        if url and not re.match(r"^[a-z]+://", url):
            file, _, anchor = url.partition("#")
            assert (ROOT / file).exists(), f"{alert}: {url}"
            assert not anchor or anchor in _anchors(ROOT / file), f"{alert}: {url}"
