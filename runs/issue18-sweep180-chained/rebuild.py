"""Rebuild experiment.json from raw/ for the points that finished: the sweep was stopped by the
runner's 25 min `timeout` (rc 124) after six of its eleven points, before it wrote its JSON.
Each point is what `prfaas experiment` computes for it (`sweep.analyze` on the saved load results),
with its stage table. usage: PYTHONPATH=<tree> python rebuild.py RUN_DIR"""

import json
import sys
from pathlib import Path

from prfaas.tools.experiment.scale import Scale
from prfaas.tools.experiment.sweep import Criterion, analyze
from prfaas.tools.loadgen import Results

run = Path(sys.argv[1])
points: dict[str, list] = {}
for raw in sorted(run.glob("raw/*.json")):
    policy, rate = raw.stem.rsplit("@", 1)
    results = Results.load(raw)
    point = analyze(results, float(rate), Scale(), Criterion())
    point["stages"] = results.stages
    points.setdefault(policy, []).append(point)
for pts in points.values():
    pts.sort(key=lambda p: p["offered_rps"])
(run / "experiment.json").write_text(
    json.dumps({"points": points, "rebuilt_from_raw": True}, indent=1)
)
print({k: [p["offered_rps"] for p in v] for k, v in points.items()})
