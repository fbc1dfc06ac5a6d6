"""Shared helpers of the deployment-artifact tests: repository paths, the resolved compose file,
the sample names prfaas/metrics exports, and a small PromQL reference extractor."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
PROMETHEUS_YML = COMPOSE_DIR / "prometheus.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
TEST_SECRET = "test-secret-not-for-production"
RATE_INTERVAL_FOR_EVAL = "1m"


def load_module(path: Path) -> ModuleType:
    """Import a standalone script under deploy/ by path (deploy/ is not a package)."""
    name = f"_prfaas_deploy_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed (Debian package providing it is needed)")
    return path


def run_compose_config(env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    compose = require_tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "PRFAAS_KV_SECRET"}
    env.update(env_extra or {})
    return subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def compose_config() -> dict[str, Any]:
    """`docker-compose config` of the compose file, parsed (interpolated, anchors merged)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read `docker-compose config`")
    proc = run_compose_config({"PRFAAS_KV_SECRET": TEST_SECRET})
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert isinstance(config, dict)
    return config


def flag(command: list[str], name: str) -> str | None:
    """The value after `name` in an argv list, or None."""
    return command[command.index(name) + 1] if name in command else None


def service_networks(service: dict[str, Any]) -> set[str]:
    return set(service.get("networks") or {})


# ---- metrics prfaas/metrics exports ----------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """Exported sample names, each with the label names its samples carry (None: not known
    because the metric produced no sample; any label is accepted then)."""

    labels: dict[str, frozenset[str] | None]


def exported_samples() -> Exported:
    """Instantiate every metric group on a fresh registry, drive each record method once so
    labelled children exist, and collect the sample names and label names actually exported."""
    from prometheus_client import CollectorRegistry

    from prfaas.metrics import (
        LinkStats,
        RelayMetrics,
        RelayStats,
        RequestStats,
        RouterMetrics,
        TransferMetrics,
        TransferStats,
        WorkerMetrics,
        WorkerStats,
    )

    registry = CollectorRegistry()
    router = RouterMetrics(registry)
    worker = WorkerMetrics(registry, cluster="pd")
    transfer = TransferMetrics(registry)
    router.record_request(RequestStats("stop", 1.0, 0.1, [0.02, 0.03], 100, 3, 50))
    router.record_http_error(429)
    router.record_routing("prfaas", "offload", "offloaded", "prfaas", 256)
    router.set_control_state(512.0, {("pd", "prefill"): 1, ("pd", "decode"): 1})
    worker.record_step(WorkerStats("pd-0", 1, 2, 0.25))
    worker.record_prefix_lookup("pd-0", 100, 50)
    worker.record_tokens("pd-0", 50, 3)
    for direction in ("sent", "received"):
        transfer.record_transfer(TransferStats("prfaas-pd", direction, 1 << 20, 0.05, 0.01))
    transfer.record_failure("prfaas-pd", "timeout")
    transfer.record_link(LinkStats("prfaas-pd", 1e8, 0.8, 0.01, 1))
    RelayMetrics(registry, "127.0.0.1:8401->127.0.0.1:8301").record(
        RelayStats(1 << 20, 2, 1.25e8, 0.005, True)
    )

    labels: dict[str, frozenset[str] | None] = {}
    for family in registry.collect():
        if family.samples:
            for sample in family.samples:
                known = labels.get(sample.name) or frozenset()
                labels[sample.name] = known | frozenset(sample.labels)
            continue
        # A family without samples (a new metric nobody drives above): derive its sample names.
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(family.type, ("",))
        for suffix in suffixes:
            labels[family.name + suffix] = None
    return Exported(labels)


# ---- PromQL ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<duration>\[[^\]]*\])
      | (?P<offset>(?:[0-9]+(?:ms|[smhdwy]))+\b)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)
      | (?P<punct>[(){},=!~<>+\-*/%^])
    )""",
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATORS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
}
_KEYWORDS = (
    _GROUPING | _AGGREGATORS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
)


@dataclass(frozen=True)
class PromRefs:
    metrics: dict[str, set[str]]
    """Metric name -> label names used in its selector's matchers."""
    grouping_labels: set[str]
    """Label names in by/without/on/ignoring/group_* clauses."""


def substitute_grafana_vars(expr: str, rate_interval: str = RATE_INTERVAL_FOR_EVAL) -> str:
    out = expr.replace("$__rate_interval", rate_interval)
    # The dashboards' `cluster` / `worker` variables at their "All" value (allValue `.*`).
    out = out.replace("$cluster", ".*").replace("$worker", ".*")
    assert "$" not in out, f"unsupported Grafana variable in {expr!r}"
    return out


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        yield kind, m.group(kind)


def promql_refs(expr: str) -> PromRefs:
    """Metric names (with their matcher label names) and grouping labels of one expression."""
    toks = list(_tokens(substitute_grafana_vars(expr)))
    metrics: dict[str, set[str]] = {}
    grouping: set[str] = set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in _GROUPING:
            if nxt == "(":
                j = i + 2
                while toks[j][1] != ")":
                    if toks[j][0] == "ident":
                        grouping.add(toks[j][1])
                    j += 1
                i = j + 1
                continue
        elif kind == "ident" and text not in _KEYWORDS and nxt != "(":
            matchers = metrics.setdefault(text, set())
            if nxt == "{":
                j = i + 2
                while toks[j][1] != "}":
                    if toks[j][0] == "ident" and toks[j + 1][1] in ("=", "!"):
                        matchers.add(toks[j][1])
                    j += 1
                i = j + 1
                continue
        elif text == "{":
            raise ValueError(f"selector without a metric name in {expr!r}")
        i += 1
    return PromRefs(metrics, grouping)


# ---- dashboards --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str
    legend: str
    datasource_uid: str


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def panel_queries() -> list[PanelQuery]:
    out = []
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(
                    PanelQuery(
                        path.name,
                        panel["title"],
                        target["expr"],
                        target.get("legendFormat", ""),
                        target["datasource"]["uid"],
                    )
                )
    return out
