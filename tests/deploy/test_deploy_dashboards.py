"""Grafana dashboards and provisioning: valid JSON, generated from their specs, every query
parses (promtool) and references only metrics and labels that prfaas/metrics exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import (
    DASHBOARD_DIR,
    GRAFANA_DIR,
    PROMETHEUS_YML,
    dashboard_files,
    exported_samples,
    load_module,
    panel_queries,
    promql_refs,
    require_tool,
    substitute_grafana_vars,
)

EXPECTED_BOARDS = {"overview", "routing", "link", "kv-transfer", "prefix-cache"}

# Issue 7: what each dashboard must show, as metrics its panels must query.
REQUIRED_METRICS = {
    "overview.json": {
        "prfaas_request_success_total",
        "prfaas_generation_tokens_total",
        "prfaas_time_to_first_token_seconds_bucket",
        "prfaas_inter_token_latency_seconds_bucket",
        "prfaas_e2e_request_latency_seconds_bucket",
        "prfaas_num_requests_running",
        "prfaas_num_requests_waiting",
    },
    "routing.json": {
        "prfaas_routing_threshold_tokens",
        "prfaas_routing_decisions_total",
        "prfaas_num_instances",
    },
    "link.json": {
        "prfaas_kv_transfer_sent_bytes_total",
        "prfaas_link_utilization_ratio",
        "prfaas_link_rtt_seconds",
        "prfaas_link_retransmits_total",
        # Issue 14: the link relays' own metrics (prfaas/metrics/relay.py).
        "prfaas_relay_bytes_total",
        "prfaas_relay_rate_limit_bytes_per_second",
        "prfaas_relay_up",
        "prfaas_relay_connections",
        "prfaas_relay_delay_seconds",
    },
    "kv-transfer.json": {
        "prfaas_kv_transfer_duration_seconds_bucket",
        "prfaas_kv_transfer_exposed_seconds_bucket",
        "prfaas_kv_transfer_failures_total",
    },
    "prefix-cache.json": {
        "prfaas_router_prefix_hit_tokens_total",
        "prfaas_prefix_cache_hits_total",
    },
}


def test_every_dashboard_is_valid_json_with_unique_ids() -> None:
    files = dashboard_files()
    assert {p.stem for p in files} == EXPECTED_BOARDS
    uids = set()
    for path in files:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids, f"{path.name}: duplicate uid"
        uids.add(board["uid"])
        assert len(board["uid"]) <= 40, "Grafana uids are at most 40 characters"
        panels = board["panels"]
        assert panels, f"{path.name} has no panels"
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            assert panel["targets"], f"{path.name}/{panel['title']}: no queries"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{path.name}/{panel['title']}: refIds"


def test_committed_dashboards_equal_generator_output() -> None:
    generator = load_module(GRAFANA_DIR / "generate_dashboards.py")
    rendered = generator.render_all()
    on_disk = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    stale = sorted(
        name for name in rendered.keys() | on_disk.keys() if rendered.get(name) != on_disk.get(name)
    )
    assert not stale, f"run `python deploy/grafana/generate_dashboards.py`; stale: {stale}"


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {
                        "record": f"prfaas_dashboard:query{i}",
                        "expr": substitute_grafana_vars(q.expr),
                    }
                    for i, q in enumerate(panel_queries())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_query_uses_only_exported_metrics_and_labels() -> None:
    exported = exported_samples().labels
    problems = []
    for q in panel_queries():
        refs = promql_refs(q.expr)
        where = f"{q.dashboard} / {q.panel}: {q.expr}"
        assert refs.metrics, f"no metric in {where}"
        available: set[str] = set()
        any_unknown_labels = False
        for name, matcher_labels in refs.metrics.items():
            if name not in exported:
                problems.append(f"unknown metric {name!r} in {where}")
                continue
            labels = exported[name]
            if labels is None:
                any_unknown_labels = True
                continue
            available |= labels
            missing = matcher_labels - labels
            if missing:
                problems.append(f"{name} has no label(s) {sorted(missing)} in {where}")
        if not any_unknown_labels:
            missing = refs.grouping_labels - available
            if missing:
                problems.append(f"grouping label(s) {sorted(missing)} not on any metric in {where}")
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", q.legend))
        if legend_labels - refs.grouping_labels:
            problems.append(f"legend {q.legend!r} uses labels the query drops in {where}")
    assert not problems, "\n".join(problems)


def test_each_dashboard_covers_what_the_issue_asks() -> None:
    used: dict[str, set[str]] = {}
    for q in panel_queries():
        used.setdefault(q.dashboard, set()).update(promql_refs(q.expr).metrics)
    for board, required in REQUIRED_METRICS.items():
        assert required <= used.get(board, set()), f"{board} misses {required - used[board]}"


def test_promql_extractor_finds_metrics_and_labels() -> None:
    # The extractor is what keeps the check above honest: it must not miss names or labels.
    refs = promql_refs(
        'histogram_quantile(0.9, sum by (le, link) (rate(a_bucket{kind!="x", b=~"y"}[$__rate_interval])))'
        " / on (link) group_left sum without (z) (c_total offset 5m) > bool 0"
    )
    assert refs.metrics == {"a_bucket": {"kind", "b"}, "c_total": set()}
    assert refs.grouping_labels == {"le", "link", "z"}
    with pytest.raises(ValueError):
        promql_refs('{__name__="x"}')
    with pytest.raises(AssertionError):
        promql_refs("rate(x[$interval])")


def test_provisioning_matches_dashboards_and_prometheus() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read provisioning files")
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    # Panels use the `datasource` variable, whose default is the provisioned datasource.
    assert {q.datasource_uid for q in panel_queries()} == {"${datasource}"}
    for path in dashboard_files():
        board = json.loads(path.read_text())
        (var,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert var["type"] == "datasource" and var["query"] == source["type"]
        assert var["current"]["value"] == source["uid"], path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}/{panel['title']}"
    prom = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert source["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/prfaas.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards/")


FILTER_VARIABLES = ("cluster", "worker")


def _selectors(expr: str, metric: str) -> list[str]:
    """The matcher text of every selector of `metric` in `expr` ("" for a bare name)."""
    out = []
    for m in re.finditer(rf"(?<![\w:]){re.escape(metric)}(?![\w:])(\{{[^}}]*\}})?", expr):
        out.append((m.group(1) or "{}")[1:-1])
    return out


def test_every_dashboard_has_the_cluster_and_worker_variables() -> None:
    for path in dashboard_files():
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert {"datasource", *FILTER_VARIABLES} <= variables.keys(), path.name
        for name in FILTER_VARIABLES:
            var = variables[name]
            where = f"{path.name} ${name}"
            assert var["type"] == "query", where
            assert var["datasource"]["uid"] == "${datasource}", where
            assert var["multi"] and var["includeAll"], f"{where}: multi-select with All"
            assert var["allValue"] == ".*", f"{where}: All must match every value"
            assert var["current"]["value"] == ["$__all"], f"{where}: defaults to All"
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            assert query == var["definition"], where
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert m and m.group(2) == name, f"{where}: {query}"
            assert "prfaas_" in m.group(1), f"{where}: values from prfaas_ series"
        worker_query = variables["worker"]["definition"]
        assert 'cluster=~"$cluster"' in worker_query, "the worker list follows the chosen clusters"
        # Variables come before their users: datasource, then cluster, then worker.
        names = [v["name"] for v in board["templating"]["list"]]
        assert names.index("datasource") < names.index("cluster") < names.index("worker")


def test_every_query_filters_by_the_labels_its_metrics_carry() -> None:
    exported = exported_samples().labels
    problems = []
    filtered = 0
    for q in panel_queries():
        for metric in promql_refs(q.expr).metrics:
            labels = exported.get(metric) or frozenset()
            wanted = [v for v in FILTER_VARIABLES if v in labels]
            if not wanted:
                continue
            for matchers in _selectors(q.expr, metric):
                filtered += 1
                for var in wanted:
                    if f'{var}=~"${var}"' not in matchers:
                        problems.append(
                            f"{q.dashboard} / {q.panel}: {metric}{{{matchers}}} lacks "
                            f'{var}=~"${var}"'
                        )
    assert not problems, "\n".join(problems)
    assert filtered >= 8, "the dashboards should show per-cluster and per-worker metrics"


def test_variables_are_used_only_on_metrics_with_those_labels() -> None:
    exported = exported_samples().labels
    for q in panel_queries():
        for metric, matchers in promql_refs(q.expr).metrics.items():
            labels = exported.get(metric)
            for var in FILTER_VARIABLES:
                if var in matchers and labels is not None:
                    assert var in labels, f"{q.dashboard} / {q.panel}: {metric} has no {var}"


def test_generator_filter_labels_match_the_exported_metrics() -> None:
    generator = load_module(GRAFANA_DIR / "generate_dashboards.py")
    exported = exported_samples().labels
    for metric, labels in generator.FILTER_LABELS.items():
        names = [n for n in exported if n in (metric, metric + "_total") or n == metric]
        assert names, f"FILTER_LABELS names {metric}, which prfaas/metrics does not export"
        carried = {v for v in FILTER_VARIABLES if v in (exported[names[0]] or ())}
        assert set(labels) == carried, f"{metric}: FILTER_LABELS {labels}, exported {carried}"
    # Every exported metric with a cluster/worker label that a dashboard uses is in the map.
    used = {m for q in panel_queries() for m in promql_refs(q.expr).metrics}
    for name in used:
        if set(FILTER_VARIABLES) & set(exported.get(name) or ()):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in generator.FILTER_LABELS, f"{name} is not in FILTER_LABELS"


def test_filtered_queries_parse_with_concrete_variable_values(tmp_path: Path) -> None:
    # A multi-select of two workers becomes a regex alternation inside the quotes.
    promtool = require_tool("promtool")
    exprs = [
        q.expr.replace("$__rate_interval", "1m")
        .replace("$cluster", "(pd|prfaas)")
        .replace("$worker", "(pd-0|prfaas-0)")
        for q in panel_queries()
    ]
    rules = {
        "groups": [
            {
                "name": "filtered",
                "rules": [
                    {"record": f"prfaas_dashboard:f{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
