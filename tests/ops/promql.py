"""What a PromQL expression or a /metrics text names: enough of PromQL to find the metric
names in the alerts' and the dashboard's queries, and of the exposition format to list
what a registry or a scrape really exports."""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

# Words of PromQL that are not metric names (functions are followed by "(" and are
# recognised that way; these are the keywords and modifiers).
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (Grafana's ``$variables`` allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def exposed_names(families: Iterable[Metric]) -> set[str]:
    """Every series name the families put in a scrape (a counter ``x`` is ``x_total``,
    a histogram ``x`` is ``x_bucket``, ``x_count``, ``x_sum``, an info ``x`` is
    ``x_info``), whether or not a labelled family has samples yet."""
    out: set[str] = set()
    for f in families:
        out.add(f.name)
        out.update(s.name for s in f.samples)
        match f.type:
            case "counter":
                out.add(f"{f.name}_total")
            case "histogram":
                out.update(f"{f.name}{s}" for s in ("_bucket", "_count", "_sum"))
            case "summary":
                out.update(f"{f.name}{s}" for s in ("_count", "_sum"))
            case "info":
                out.add(f"{f.name}_info")
    return out


def scraped_names(text: str) -> set[str]:
    """Every series name in a /metrics text (its samples and its ``# TYPE`` lines, so that
    a labelled family with no sample yet counts), with each histogram's and counter's
    series names."""
    out: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            out.add(name)
            if kind == "counter":
                out.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "histogram":
                out.update(f"{name}{s}" for s in ("_bucket", "_count", "_sum"))
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def base_name(name: str) -> str:
    """``x_total`` -> ``x`` etc. (for messages)."""
    for s in _SUFFIXES:
        if name.endswith(s):
            return name.removesuffix(s)
    return name
