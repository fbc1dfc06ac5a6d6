"""The router and an emulated worker never import torch (issue 13): both run where torch is absent
or too heavy, and a stray import through a shared type would pull hundreds of MB into each.

Each check runs in a fresh interpreter, wires the real components (the router's from the default
topology; an emulated PD worker's backend and engine from its own command line, serving one
request from the wire) and then looks at sys.modules."""

from __future__ import annotations

import subprocess
import sys

ROUTER = """
from prfaas.topology import DEFAULT_TOPOLOGY, load_topology
from prfaas.router.main import build

process = build(load_topology(DEFAULT_TOPOLOGY))
assert process.registry is not None
"""

EMULATED_WORKER = """
import argparse

from prfaas._proto.prfaas.v1 import common_pb2
from prfaas.data import case_study_file
from prfaas.engine.core import EngineCore
from prfaas.pd_worker import main as pd_main
from prfaas.prefill_worker import main as prefill_main  # noqa: F401 (its entry module loads too)
from prfaas.request import Request
from prfaas.worker.wire_inputs import inputs_from_proto
from prfaas.worker.options import PDWorkerOptions, build_backend, options_from_args

parser = argparse.ArgumentParser()
pd_main.add_arguments(parser)
profile = str(case_study_file("h20_8gpu_prefill.csv"))
args = parser.parse_args(["--worker-id", "pd-0", "--backend", "emulated", "--profile", profile])
backend, eos, max_context = build_backend(options_from_args(PDWorkerOptions, args))
engine = EngineCore(backend, cache_budget_bytes=64 << 20, max_num_batched_tokens=4096,
                    max_num_seqs=8, max_model_len=max_context)
prompt, params = inputs_from_proto([1, 2, 3, 4], common_pb2.SamplingParams(max_tokens=3), 256)
request = Request("r0", prompt, params, eos_token_id=eos)
engine.add_request(request)
while not request.is_finished:
    engine.step()
assert len(request.output_token_ids) == 3, request.output_token_ids
"""

CHECK = "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code + CHECK], capture_output=True, text=True, timeout=120
    )


def test_router_never_imports_torch() -> None:
    proc = _run(ROUTER)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_emulated_worker_never_imports_torch() -> None:
    proc = _run(EMULATED_WORKER)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_check_sees_torch_when_it_is_imported() -> None:
    """The probe itself can fail: importing the torch backend is caught."""
    proc = _run("import prfaas.engine.backend_torch\n")
    assert proc.returncode != 0 and "torch was imported" in proc.stderr
