"""Write the prfaas Grafana dashboards (deploy/grafana/dashboards/*.json) from the specs below.

The JSON files are committed so Grafana can provision them as they are; this script is their
source. After editing a spec, run `python deploy/grafana/generate_dashboards.py`;
tests/deploy/test_dashboards.py fails when the committed files differ from its output, and checks
every query against the metrics prfaas/metrics defines.

Every dashboard has three template variables: `datasource` (a Prometheus datasource, the
provisioned one by default), `cluster` and `worker` (multi-select, "All" by default, read from the
`cluster` / `worker` labels of the prfaas_ series). Every selector of a metric that carries those
labels (FILTER_LABELS) is filtered by them: `{cluster=~"$cluster", worker=~"$worker"}`. Besides
`$__rate_interval`, queries use only these two variables, whose "All" value is `.*`, so a query
evaluates directly against Prometheus with `$cluster` and `$worker` replaced by `.*`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
PROVISIONED_DATASOURCE_UID = "prometheus"  # provisioning/datasources/prometheus.yml
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
OFFLOAD = '{route="offload"}'
RECEIVED = '{direction="received"}'

# Labels each dashboard metric carries that the `cluster` / `worker` variables filter on
# (prfaas/metrics/worker.py: WorkerMetrics; router.py: prefix hits and instances per cluster).
# tests/deploy/test_deploy_dashboards.py checks this against the exported metrics.
_WORKER = ("cluster", "worker")
FILTER_LABELS: dict[str, tuple[str, ...]] = {
    "prfaas_num_requests_running": _WORKER,
    "prfaas_num_requests_waiting": _WORKER,
    "prfaas_kv_cache_usage_ratio": _WORKER,
    "prfaas_prefix_cache_queries_total": _WORKER,
    "prfaas_prefix_cache_hits_total": _WORKER,
    "prfaas_prefill_computed_tokens_total": _WORKER,
    "prfaas_decode_tokens_total": _WORKER,
    "prfaas_router_prefix_hit_tokens_total": ("cluster",),
    "prfaas_num_instances": ("cluster",),
}
_SUFFIXES = ("_bucket", "_sum", "_count")


def sel(metric: str, selector: str = "") -> str:
    """`metric{...}`: the matchers of `selector` plus the variable filters the metric takes."""
    base = metric
    for suffix in _SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in FILTER_LABELS:
            base = metric[: -len(suffix)]
    matchers = [selector.strip("{}")] if selector else []
    matchers += [f'{label}=~"${label}"' for label in FILTER_LABELS.get(base, ())]
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""


def rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({sel(metric, selector)}[{RI}]))"


def quantiles(hist: str, by: str = "", label: str = "") -> tuple[Query, ...]:
    """P50/P90/P99 and the mean of a histogram, optionally split by labels."""
    extra = f", {by}" if by else ""
    prefix = f"{label} " if label else ""
    qs = tuple(
        Query(
            f"histogram_quantile({q}, sum by (le{extra}) (rate({sel(hist + '_bucket')}[{RI}])))",
            f"{prefix}p{int(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    )
    mean = Query(f"{rate(hist + '_sum', by)} / {rate(hist + '_count', by)}", f"{prefix}mean")
    return (*qs, mean)


def _with_legend_labels(queries: tuple[Query, ...], labels: str) -> tuple[Query, ...]:
    suffix = " ".join("{{" + name.strip() + "}}" for name in labels.split(","))
    return tuple(Query(q.expr, f"{suffix} {q.legend}") for q in queries)


OVERVIEW = [
    Panel(
        "Request throughput",
        (Query(rate("prfaas_request_success_total", "finished_reason"), "{{finished_reason}}"),),
        "reqps",
        "Finished requests per second at the router, by finish reason.",
    ),
    Panel(
        "Token throughput",
        (
            Query(rate("prfaas_prompt_tokens_total"), "prompt"),
            Query(rate("prfaas_generation_tokens_total"), "generation"),
        ),
        "short",
        "Prompt and generated tokens per second at the router.",
    ),
    Panel(
        "Time to first token",
        quantiles("prfaas_time_to_first_token_seconds"),
        "s",
        "TTFT percentiles and mean (router).",
    ),
    Panel(
        "Inter-token latency",
        quantiles("prfaas_inter_token_latency_seconds"),
        "s",
        "ITL percentiles and mean (router).",
    ),
    Panel(
        "End-to-end latency",
        quantiles("prfaas_e2e_request_latency_seconds"),
        "s",
        "Request latency percentiles and mean (router).",
    ),
    Panel(
        "Requests running",
        (Query(f"sum by (cluster, worker) ({sel('prfaas_num_requests_running')})", "{{worker}}"),),
        "short",
        "Requests in each worker's running batch.",
    ),
    Panel(
        "Requests waiting",
        (Query(f"sum by (cluster, worker) ({sel('prfaas_num_requests_waiting')})", "{{worker}}"),),
        "short",
        "Requests queued at each worker.",
    ),
    Panel(
        "KV cache usage",
        (Query(f"max by (cluster, worker) ({sel('prfaas_kv_cache_usage_ratio')})", "{{worker}}"),),
        "percentunit",
        "Fraction of each worker's KV blocks in use.",
    ),
    Panel(
        "HTTP errors",
        (Query(rate("prfaas_http_errors_total", "status_code"), "{{status_code}}"),),
        "reqps",
        "Requests answered with an HTTP error, by status code (empty while there are none).",
    ),
]

ROUTING = [
    Panel(
        "Routing threshold t",
        (Query("max(prfaas_routing_threshold_tokens)", "t"),),
        "short",
        "Current uncached-length threshold above which prefill is offloaded to the PrfaaS cluster.",
    ),
    Panel(
        "Offload fraction",
        (
            Query(
                f"{rate('prfaas_routing_decisions_total', selector=OFFLOAD)}"
                f" / {rate('prfaas_routing_decisions_total')}",
                "offloaded",
            ),
        ),
        "percentunit",
        "Share of routed requests whose prefill ran in the PrfaaS cluster.",
    ),
    Panel(
        "Decisions by reason",
        (Query(rate("prfaas_routing_decisions_total", "route, reason"), "{{route}} {{reason}}"),),
        "reqps",
        "Routing decisions per second by route and reason.",
    ),
    Panel(
        "Decisions by policy",
        (Query(rate("prfaas_routing_decisions_total", "policy, route"), "{{policy}} {{route}}"),),
        "reqps",
        "Routing decisions per second by policy and route.",
    ),
    Panel(
        "Instances (N_p / N_d)",
        (Query(f"sum by (cluster, role) ({sel('prfaas_num_instances')})", "{{cluster}} {{role}}"),),
        "short",
        "Instances per cluster and role; the local PD cluster's prefill and decode counts are "
        "N_p and N_d, changed by the long-timescale controller.",
    ),
]

LINK = [
    Panel(
        "Egress (KV bytes sent)",
        (Query(f"{rate('prfaas_kv_transfer_sent_bytes_total', 'link')} * 8", "{{link}}"),),
        "bps",
        "KV cache bits per second sent, per link (completed transfers).",
    ),
    Panel(
        "Link goodput",
        (Query("sum by (link) (prfaas_link_goodput_bytes_per_second) * 8", "{{link}}"),),
        "bps",
        "Application bits per second delivered over each link (TCP_INFO sampler).",
    ),
    Panel(
        "Link utilization",
        (Query("max by (link) (prfaas_link_utilization_ratio)", "{{link}}"),),
        "percentunit",
        "Goodput over the link's nominal bandwidth.",
    ),
    Panel(
        "Link RTT",
        (Query("max by (link) (prfaas_link_rtt_seconds)", "{{link}}"),),
        "s",
        "Smoothed TCP round-trip time per link.",
    ),
    Panel(
        "Retransmits",
        (Query(rate("prfaas_link_retransmits_total", "link"), "{{link}}"),),
        "short",
        "TCP segments retransmitted per second, per link.",
    ),
    Panel(
        "Bytes in flight and backlog",
        (
            Query("sum by (link) (prfaas_link_bytes_in_flight)", "{{link}} in flight"),
            Query("sum by (link) (prfaas_link_queued_bytes)", "{{link}} queued"),
        ),
        "bytes",
        "KV bytes on the wire and not yet acknowledged, and bytes waiting in the sender.",
    ),
    Panel(
        "Ingress (KV bytes received)",
        (Query(f"{rate('prfaas_kv_transfer_received_bytes_total', 'link')} * 8", "{{link}}"),),
        "bps",
        "KV cache bits per second received, per link (completed transfers).",
    ),
    # The link relays' own metrics (prfaas/metrics/relay.py; Prometheus job `link-relay`).
    Panel(
        "Relay throughput and rate cap",
        (
            Query(f"{rate('prfaas_relay_bytes_total', 'link')} * 8", "{{link}} relayed"),
            Query("max by (link) (prfaas_relay_rate_limit_bytes_per_second) * 8", "{{link}} cap"),
        ),
        "bps",
        "Bits per second each `prfaas link` relay forwards (both directions) against its "
        "configured cap per direction (0: uncapped). Relays that `prfaas up` starts in front of "
        "the PD workers share one cap (one link): compare their sum with one cap.",
    ),
    Panel(
        "Relay state and connections",
        (
            Query("min by (link) (prfaas_relay_up)", "{{link}} up"),
            Query("sum by (link) (prfaas_relay_connections)", "{{link}} connections"),
        ),
        "short",
        "1 while a relay forwards, 0 while its link is cut, down or stalled (`prfaas up` prints "
        "each relay's control port); TCP connections open through it.",
    ),
    Panel(
        "Relay delay",
        (Query("max by (link) (prfaas_relay_delay_seconds)", "{{link}}"),),
        "s",
        "Configured one-way delay of each relay (changed at run time by its `delay` command).",
    ),
]

KV_TRANSFER = [
    Panel(
        "Transfer duration",
        _with_legend_labels(
            quantiles("prfaas_kv_transfer_duration_seconds", "direction"), "direction"
        ),
        "s",
        "Time from the first to the last KV frame, by side (sent / received).",
    ),
    Panel(
        "Exposed transfer time",
        quantiles("prfaas_kv_transfer_exposed_seconds"),
        "s",
        "Transfer time the decode side waited for after prefill compute finished.",
    ),
    Panel(
        "Exposed share of transfer time",
        (
            Query(
                f"{rate('prfaas_kv_transfer_exposed_seconds_sum')}"
                f" / {rate('prfaas_kv_transfer_duration_seconds_sum', selector=RECEIVED)}",
                "exposed / total",
            ),
        ),
        "percentunit",
        "Fraction of receive-side transfer time not hidden behind prefill compute.",
    ),
    Panel(
        "Transfers per second",
        (Query(rate("prfaas_kv_transfer_duration_seconds_count", "direction"), "{{direction}}"),),
        "short",
        "Completed KV transfers per second, by side.",
    ),
    Panel(
        "Transfer size",
        _with_legend_labels(quantiles("prfaas_kv_transfer_size_bytes", "direction"), "direction"),
        "bytes",
        "KV cache bytes per transfer.",
    ),
    Panel(
        "Transfer failures",
        (Query(rate("prfaas_kv_transfer_failures_total", "link, kind"), "{{link}} {{kind}}"),),
        "short",
        "Failed transfers per second by link and kind (empty while there are none).",
    ),
]

PREFIX_CACHE = [
    Panel(
        "Prefix hit tokens per cluster (router index)",
        (Query(rate("prfaas_router_prefix_hit_tokens_total", "cluster"), "{{cluster}}"),),
        "short",
        "Prompt tokens per second the router's global prefix index found cached, by the cluster "
        "the request was routed to.",
    ),
    Panel(
        "Prefix hit tokens per cluster (workers)",
        (Query(rate("prfaas_prefix_cache_hits_total", "cluster"), "{{cluster}}"),),
        "short",
        "Prompt tokens per second found in the workers' prefix caches.",
    ),
    Panel(
        "Prefix cache hit rate",
        (
            Query(
                f"{rate('prfaas_prefix_cache_hits_total', 'cluster')}"
                f" / {rate('prfaas_prefix_cache_queries_total', 'cluster')}",
                "{{cluster}}",
            ),
        ),
        "percentunit",
        "Hit tokens over looked-up tokens, per cluster.",
    ),
    Panel(
        "Cached share of prompt tokens",
        (
            Query(
                f"{rate('prfaas_prompt_cached_tokens_total')} / {rate('prfaas_prompt_tokens_total')}",
                "cached / prompt",
            ),
        ),
        "percentunit",
        "Prompt tokens reported as cached in usage, over all prompt tokens (router).",
    ),
    Panel(
        "Prefill tokens computed per cluster",
        (Query(rate("prfaas_prefill_computed_tokens_total", "cluster"), "{{cluster}}"),),
        "short",
        "Prompt tokens the workers computed (cache misses) per second.",
    ),
]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "overview": ("Overview", OVERVIEW),
    "routing": ("Routing", ROUTING),
    "link": ("Cross-datacenter link", LINK),
    "kv-transfer": ("KV transfer", KV_TRANSFER),
    "prefix-cache": ("Prefix cache", PREFIX_CACHE),
}


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
                "range": True,
            }
            for i, q in enumerate(panel.queries)
        ],
    }


def _query_variable(name: str, label: str, query: str) -> dict[str, object]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,  # on time range change: workers come and go
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


# `label_values(series, label)` over every prfaas_ series, so a cluster or worker shows up as soon
# as any of its metrics does; the worker list follows the chosen clusters.
CLUSTER_QUERY = 'label_values({__name__=~"prfaas_.+"}, cluster)'
WORKER_QUERY = 'label_values({__name__=~"prfaas_.+", cluster=~"$cluster"}, worker)'


def templating() -> dict[str, object]:
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "refresh": 1,
        "multi": False,
        "includeAll": False,
        "current": {"selected": True, "text": "Prometheus", "value": PROVISIONED_DATASOURCE_UID},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }
    return {
        "list": [
            datasource,
            _query_variable("cluster", "Cluster", CLUSTER_QUERY),
            _query_variable("worker", "Worker", WORKER_QUERY),
        ]
    }


def dashboard_json(slug: str, title: str, panels: list[Panel]) -> dict[str, object]:
    return {
        "uid": f"prfaas-{slug}",
        "title": f"prfaas / {title}",
        "tags": ["prfaas"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "browser",
        "templating": templating(),
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["prfaas"],
                "asDropdown": True,
                "title": "prfaas",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": [panel_json(p, i + 1, 12 * (i % 2), 8 * (i // 2)) for i, p in enumerate(panels)],
    }


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{slug}.json": json.dumps(dashboard_json(slug, title, panels), indent=2) + "\n"
        for slug, (title, panels) in DASHBOARDS.items()
    }


def main() -> int:
    DASHBOARD_DIR.mkdir(exist_ok=True)
    for name, text in render_all().items():
        (DASHBOARD_DIR / name).write_text(text)
        print(f"wrote {DASHBOARD_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
