#!/usr/bin/env bash
# GPU check: the suite's `gpu` cases on CUDA, then `prfaas bench model --preset large` with prefill
# MFU and the decode read-bandwidth fraction.
# Usage (repository root, on a machine with an NVIDIA GPU): bash scripts/gpu_check.sh
# Writes ${OUT:-.}/gpu_tests.log and ${OUT:-.}/bench_model_large.json; prints a summary.
# What the `gpu` tests prove (tests/gpu/test_cuda_paths.py): CUDA prefill/decode against the CPU
# oracles (fp32 and bf16), KV out of device memory through pinned host buffers into a second
# device cache, and a pd-worker serving a request on CUDA with an in-process CUDA engine's tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.}
export OMP_WAIT_POLICY=PASSIVE

"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0), torch.__version__)'
# -m gpu selects only the GPU cases; the CPU suite (tests/model) stays device independent.
"$PY" -m pytest -q -m gpu tests/gpu 2>&1 | tee "$OUT/gpu_tests.log"
"$PY" -m prfaas.cli bench model --preset large --device cuda --json | tee "$OUT/bench_model_large.json"
# Prefill MFU against the GPU's dense bf16 peak (datasheet), besides the bench's own fraction of
# the matmul ceiling measured in the same run; decode as a fraction of the measured read bandwidth.
"$PY" - "$OUT/bench_model_large.json" <<'PYEOF'
import json, sys
import torch

PEAK_BF16_DENSE = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
name = torch.cuda.get_device_name(0)
peak = next((v for k, v in PEAK_BF16_DENSE.items() if k in name), None)
r = json.load(open(sys.argv[1]))
print(f"{name}: read bandwidth {r['read_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s, "
      f"matmul ceiling {r['matmul_ceiling_flops_per_s'] / 1e12:.0f} TFLOP/s")
for p in r["prefill"]:
    mfu = f"{p['flops_per_s'] / peak:.2f}" if peak else "n/a (unknown GPU peak)"
    print(f"prefill {p['tokens']:>6}: MFU {mfu}, {p['fraction_of_ceiling']:.2f} of matmul ceiling")
for d in r["decode"]:
    print(f"decode B={d['batch']:>2} @{d['context']}: {d['step_ms']:.2f} ms/step, "
          f"{d['fraction_of_read_bandwidth']:.2f} of read bandwidth")
PYEOF
