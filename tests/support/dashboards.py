"""The Grafana dashboards and their PromQL: which metric names and labels they query, and which
series names a /metrics page exports (prometheus-client's exposition format)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DASHBOARD_FILES = ("batch-jobs.json", "model-monitoring.json")

# Series Prometheus itself adds to every scrape target: a panel may query them.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                        "scrape_samples_post_metric_relabeling", "scrape_series_added"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "inf", "nan"}


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows too (a collapsed row holds its panels)."""
    stack = list(reversed(board["panels"]))
    while stack:
        panel = stack.pop()
        yield panel
        stack.extend(reversed(panel.get("panels", [])))


class Query(NamedTuple):
    """One query a dashboard sends: a panel target, as Grafana sends it (`instant` or `range`),
    or a variable's `label_values(match, label)`."""

    where: str
    expr: str
    kind: Literal["instant", "range", "label_values"]
    label: str = ""


def grafana_queries(board: dict[str, Any]) -> Iterator[Query]:
    """Every panel target and every query variable of a dashboard."""
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            kind: Literal["instant", "range"] = "instant" if target.get("instant") and not target.get("range") \
                else "range"
            yield Query(f"{board['uid']} / {panel['title']} / {target['refId']}", target["expr"], kind)
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
        assert m, f"{board['uid']} / ${var['name']}: not a label_values() query: {query!r}"
        yield Query(f"{board['uid']} / ${var['name']}", m.group(1), "label_values", m.group(2))


def dashboard_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for q in grafana_queries(board):
        yield q.where, q.expr


def grafana_variables(board: dict[str, Any], scrape_interval_s: int) -> dict[str, str]:
    """What Grafana puts for each variable when the dashboard opens with its defaults, against a
    Prometheus that scrapes every `scrape_interval_s` seconds:
    - `$__range` (`_s`, `_ms`): the dashboard's default time range (`now-30d` gives `2592000s`);
    - `$__interval`: the scrape interval (Grafana's floor for it is the data source's
      `timeInterval`, which the provisioned data source sets to the scrape interval);
    - `$__rate_interval`: max($__interval + scrape interval, 4 × scrape interval), Grafana's rule,
      which is 4 × the scrape interval here;
    - a template variable: its default, which is "All" in both dashboards, and "All" is the
      variable's `allValue` (`.*`), a regex that matches every value."""
    time_from = board["time"]["from"]
    m = re.fullmatch(r"now-(\d+)([smhdw])", time_from)
    assert m and board["time"]["to"] == "now", f"{board['uid']}: time range {board['time']}"
    range_s = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}[m.group(2)]
    values = {"__range": f"{range_s}s", "__range_s": str(range_s), "__range_ms": str(range_s * 1000),
              "__interval": f"{scrape_interval_s}s", "__interval_ms": str(scrape_interval_s * 1000),
              "__rate_interval": f"{4 * scrape_interval_s}s"}
    for var in board.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        current = current if isinstance(current, list) else [current]
        if "$__all" in current:
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            values[var["name"]] = "|".join(re.escape(str(v)) for v in current)
    return values


def substitute(expr: str, variables: dict[str, str]) -> str:
    """`expr` with every `$name` / `${name}` replaced; a variable not in `variables` is an error,
    so that a new one cannot reach Prometheus unreplaced."""
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in variables, f"no value for ${name} in {expr!r}"
        return variables[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names or durations."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)          # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)                         # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                        # ranges and subqueries
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?[\w$]+", " ", e)
    e = re.sub(r"@\s*[\w.()]+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        if m.group(2) or m.group(1).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every `name{...}` selector."""
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", expr):
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        out.append((m.group(1), labels))
    return out


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page can carry, from its `# TYPE` lines (prometheus-client
    prints them for each registered metric, before a labeled child has a sample)."""
    suffixes = {"counter": ("", "_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"),
                "gauge": ("",), "untyped": ("",), "info": ("_info",), "stateset": ("",),
                "gaugehistogram": ("_bucket", "_gsum", "_gcount")}
    names = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            name, kind = parts[2], parts[3]
            base = name[:-len("_total")] if kind == "counter" and name.endswith("_total") else name
            names.update(base + s for s in suffixes.get(kind, ("",)))
    return names


def queried_names() -> dict[str, set[str]]:
    """Metric name -> where the dashboards query it."""
    where: dict[str, set[str]] = {}
    for name in DASHBOARD_FILES:
        for place, expr in dashboard_queries(load_dashboard(name)):
            for metric in metric_names(expr):
                where.setdefault(metric, set()).add(place)
    return where
