"""Files the package ships, found with importlib.resources so an installed prfaas needs nothing
beside it.

- `case_study/`: the paper's case study (arXiv 2604.15039 §4): `case_study.toml` and the per-instance
  prefill profiles it names (`h200_8gpu_prefill.csv` from Table 5, `h20_8gpu_prefill.csv`
  reconstructed). The planner's default case and the emulated backend's default profiles.
  `kv_throughput.toml`: Table 3's per-model Φ_kv and §2.3's stated egress (`prfaas sim
  --projections`).
- `topologies/local.toml`: the default topology of `prfaas up` (deploy/local.toml is a link to it).
- `tokenizer/`: the embedded byte-level model's tokenizer as a Hugging Face directory
  (`prfaas tokenizer export` writes the same files; the router serves them on /v1/tokenizer/).
- `netns/`: `setup.sh` and `teardown.sh`, the two network namespaces of `prfaas up --netns`
  (deploy/netns/ links to them, for running them by hand).
- `traces/`: the workload traces the load generator replays by default and the tests read (sources,
  licenses and checksums in `traces/README.md`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_file(*parts: str) -> Path:
    """Path of a shipped file, e.g. `data_file("traces", "mooncake_conversation_trace.jsonl")`.

    A plain or editable install keeps package data on disk, so the resource is a real path.
    """
    return Path(str(files(__name__).joinpath(*parts)))


def case_study_file(name: str = "case_study.toml") -> Path:
    """The paper's case study TOML or one of its profile CSVs."""
    return data_file("case_study", name)


def trace_file(name: str) -> Path:
    """One of the shipped workload traces (see traces/README.md)."""
    return data_file("traces", name)


def topology_file(name: str) -> Path:
    """A shipped topology file (`local.toml`: the default of `prfaas up`)."""
    return data_file("topologies", name)


def netns_script(name: str) -> Path:
    """`setup.sh` or `teardown.sh` of the two-namespace link (run with bash: installs may drop the
    executable bit)."""
    return data_file("netns", name)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
"""The files of a tokenizer directory that clients load (and the router serves, when present)."""


def tokenizer_dir() -> Path:
    """The shipped tokenizer directory of the embedded byte-level model."""
    return data_file("tokenizer")
