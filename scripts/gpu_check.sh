#!/usr/bin/env bash
# GPU check for the model package: run the model tests and the large-preset benchmark on CUDA.
# Usage (repository root, on a machine with an NVIDIA GPU): bash scripts/gpu_check.sh
# Writes the benchmark JSON to ${OUT:-.}/bench_model_large.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.}
export OMP_WAIT_POLICY=PASSIVE PRFAAS_DEVICE=cuda

"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0), torch.__version__)'
# The suite runs on CPU tensors by design; on a GPU host it also runs the `gpu`-marked tests.
"$PY" -m pytest -q tests/model
# Smoke test on CUDA: prefill + decode of the tiny preset against the CPU oracle.
"$PY" - <<'PYEOF'
import torch
from prfaas.model import HybridCache, HybridModel, SeqCache, get_preset
from prfaas.model.reference import naive_forward

c = get_preset("tiny")
cpu, gpu = HybridModel(c), HybridModel(c, device="cuda")
tokens = torch.randint(0, 256, (130,))
cache = HybridCache(c, 4, 1, block_size=64, device="cuda")
seq = SeqCache([0, 1, 2, 3], 0, 0)
got = gpu.prefill(tokens, cache, seq).cpu()
want = naive_forward(cpu, tokens)[-1]
ok = cpu.logit_mask == 0
err = (got[ok] - want[ok]).abs().max().item()
print(f"tiny CUDA prefill vs CPU oracle: max abs diff {err:.2e}")
assert err < 1e-3, err
seq.num_tokens = 130
step = gpu.decode(torch.tensor([5]), cache, [seq])
assert torch.isfinite(step[0, ok.cuda()]).all()
PYEOF
.venv/bin/prfaas bench model --preset large --device cuda --json | tee "$OUT/bench_model_large.json"
