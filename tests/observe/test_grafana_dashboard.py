"""The Grafana dashboard in docs/grafana queries only metrics a live node exports (issue 10).

Every PromQL expression of ``docs/grafana/zakura-dashboard.json`` (panel targets and the
``instance`` variable's query) is reduced to the metric names it reads; each must appear in a
real node's ``/metrics`` (fetched without a token, as Prometheus does), as a sample or a
``# TYPE`` line (a labelled counter has no sample before its first event). The nodes are real
processes, and the second syncs 30 blocks from the first first, so the sync counters the
dashboard plots have samples too.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import Procs, wait_for_snapshot

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "zakura-dashboard.json"
#: Series Prometheus makes itself for every scrape target, exported by no node.
PROMETHEUS_OWN = frozenset({"up"})
#: PromQL keywords that look like identifiers but are not metrics.
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
     "offset", "inf", "nan"}
)  # fmt: skip
#: What issue 10 asks the dashboard to show, by metric.
REQUIRED = frozenset(
    {
        "zakura_p2p_conn_active",  # peers
        "zakura_routine_started_total",  # routines by state
        "zakura_routine_exited_total",
        "zakura_pipe_panic_total",  # panics
        "sync_header_best_tip_height",  # header tip and rate
        "sync_header_headers_committed_total",
        "sync_block_download_floor",  # block sync floor and rate
        "sync_block_committed_total",
        "sync_block_budget_used_bytes",  # byte budget
        "zakura_event_loop_lag_seconds",  # loop lag
        "zakura_peer_misbehavior_total",  # misbehavior
    }
)
SYNC_BLOCKS = 30


# ---------------------------------------------------------------------- PromQL -> metric names
def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana variables allowed).

    Drops string literals, label matchers, range and subquery brackets, Grafana variables,
    grouping clauses (``by (...)``, ``on (...)`` ...), keywords and every identifier followed
    by ``(`` (functions and aggregations); ``label_values(metric, label)`` keeps its metric.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r" \1 ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", s):
        word = match.group()
        if word.lower() in PROMQL_WORDS or re.match(r"\s*\(", s[match.end() :]):
            continue
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (instance, service) (rate(zakura_pipe_panic_total{instance=~"$instance"}'
            "[$__rate_interval]))",
            {"zakura_pipe_panic_total"},
        ),
        ("a_total - on (instance) group_left() b_bytes offset 5m", {"a_total", "b_bytes"}),
        ('count(up{job="x", a=~"b|c"} == 0) or vector(0)', {"up"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m])))",
            {"x_seconds_bucket"},
        ),
        ("label_values(zakura_p2p_conn_active, instance)", {"zakura_p2p_conn_active"}),
        ("scalar(max(m:rule)) - m:rule * 1e3 > bool 2", {"m:rule"}),
        ('sum(rate(x_total{reason="a{b}"}[1m:10s]))', {"x_total"}),
    ],
)
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries(node: Any) -> Iterator[str]:
    """Every PromQL string in the dashboard: ``expr`` of targets, the variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def variable_queries(doc: dict[str, Any]) -> list[str]:
    out = []
    for var in doc["templating"]["list"]:
        query = var["query"]
        out.append(query["query"] if isinstance(query, dict) else query)
    return out


def dashboard_metric_names() -> set[str]:
    doc = dashboard()
    names: set[str] = set()
    for expr in [*queries(doc["panels"]), *variable_queries(doc)]:
        names |= metric_names(expr)
    return names


# ---------------------------------------------------------------------- the dashboard model
def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_is_an_importable_model_over_a_prometheus_input() -> None:
    doc = dashboard()
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    assert doc["__inputs"][0]["pluginId"] == "prometheus"
    assert doc["id"] is None and doc["uid"] and doc["title"]
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    (var,) = doc["templating"]["list"]
    assert var["name"] == "instance" and var["type"] == "query"
    assert var["multi"] and var["includeAll"]
    assert var["datasource"]["uid"] == "${DS_PROMETHEUS}"
    for panel in panels(doc):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            # Every query follows the node picker.
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    names = dashboard_metric_names()
    assert names >= REQUIRED, sorted(REQUIRED - names)


# ---------------------------------------------------------------------- against a live node
def parse_exposition(text: str) -> tuple[dict[str, float], dict[str, str]]:
    """Prometheus text: sample name -> sum of its values, and ``# TYPE`` name -> type."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([A-Za-z_:][\w:]*)(?:\{.*\})?\s+(\S+)", line)
            assert match is not None, line
            name, value = match.group(1), float(match.group(2))
            samples[name] = samples.get(name, 0.0) + value
    return samples, types


def is_exported(name: str, samples: dict[str, float], types: dict[str, str]) -> bool:
    if name in samples or name in types:
        return True
    base, _, suffix = name.rpartition("_")
    kind = types.get(base)
    return (suffix == "bucket" and kind == "histogram") or (
        suffix in ("sum", "count") and kind in ("histogram", "summary")
    )


async def test_every_metric_the_dashboard_queries_is_exported_by_a_live_node(
    tmp_path: Path,
) -> None:
    names = dashboard_metric_names() - PROMETHEUS_OWN
    assert len(names) >= 40, sorted(names)
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a", "--blocks", str(SYNC_BLOCKS))
        b = await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        async with aiohttp.ClientSession() as http:
            await wait_for_snapshot(
                http,
                b,
                lambda s: s["chain"]["verified_tip"]["height"] == SYNC_BLOCKS,
                30,
                "B to sync A's blocks",
            )
            texts = {}
            for who, node in (("a", a), ("b", b)):
                async with http.get(f"http://{node.api}/metrics") as resp:  # open: no token
                    assert resp.status == 200, who
                    texts[who] = await resp.text()
    finally:
        await procs.stop_all()
    for who, text in texts.items():
        samples, types = parse_exposition(text)
        missing = sorted(n for n in names if not is_exported(n, samples, types))
        assert not missing, f"node {who} does not export {missing}"
    # The sync the dashboard plots happened, and shows in the counters it reads.
    b_samples, _ = parse_exposition(texts["b"])
    a_samples, _ = parse_exposition(texts["a"])
    assert b_samples["sync_header_headers_committed_total"] >= SYNC_BLOCKS
    assert b_samples["sync_block_committed_total"] >= SYNC_BLOCKS
    assert b_samples["sync_header_best_tip_height"] == SYNC_BLOCKS
    assert b_samples["sync_block_download_floor"] == SYNC_BLOCKS
    assert b_samples["zakura_routine_started_total"] >= 3
    assert a_samples["sync_block_served_total"] >= SYNC_BLOCKS
    assert a_samples["zakura_p2p_conn_active"] >= 1
