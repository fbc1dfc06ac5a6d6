"""`prfaas bench serve`: an open-loop load generator for the OpenAI-compatible HTTP endpoint.

Python API (what `prfaas demo` and `prfaas experiment` call):
- workloads: `lognormal_workload`, `mooncake_workload`, `azure_workload` -> `Workload`
- arrivals: `poisson_schedule`, `trace_schedule`, `schedule_for` -> send times in seconds
- `run_load(url, workload, schedule, ...) -> Results` (records, summary, metric samples)
- `compare_policies(topology, workload, ...) -> Comparison` (one deployment per routing policy)
- `format_table`, `write_results`, `write_comparison` for JSON, Markdown and PNG outputs
"""

from __future__ import annotations

from prfaas.tools.loadgen.arrivals import poisson_schedule, schedule_for, trace_schedule
from prfaas.tools.loadgen.compare import Comparison, compare_policies, write_comparison
from prfaas.tools.loadgen.results import Results, Summary, summarize
from prfaas.tools.loadgen.run_report import format_table, write_results
from prfaas.tools.loadgen.runner import LoadConfig, run_load
from prfaas.tools.loadgen.workloads import (
    RequestSpec,
    Workload,
    azure_workload,
    lognormal_workload,
    mooncake_workload,
)

__all__ = [
    "Comparison",
    "LoadConfig",
    "RequestSpec",
    "Results",
    "Summary",
    "Workload",
    "azure_workload",
    "compare_policies",
    "format_table",
    "lognormal_workload",
    "mooncake_workload",
    "poisson_schedule",
    "run_load",
    "schedule_for",
    "summarize",
    "trace_schedule",
    "write_comparison",
    "write_results",
]
