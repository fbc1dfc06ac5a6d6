#!/bin/bash
# issue 18 re-comparison at a6866da, from /tmp/h18-wt2; every run under the measurement lock by the caller.
set -u
cd /tmp/h18-wt2
export PYTHONPATH=/tmp/h18-wt2
PY=/work/main/.venv/bin/python
O=/tmp/h18/out; mkdir -p $O
sim() { $PY -c "from prfaas.cli import main; import sys; sys.argv=['prfaas','sim']+sys.argv[1:]; sys.exit(main())" "$@"; }
uptime; date -u
S=/tmp/h18/shims
for pol in homogeneous-pd naive-hetero prfaas; do
  other=naive-hetero; [ $pol = naive-hetero ] && other=homogeneous-pd
  sim --experiment --policies $pol --no-fluctuation --multipliers "" --common-factor 0.9 --duration 300 --out-dir $O/oos-$pol-none > /dev/null
  sim --experiment --policies $pol --no-fluctuation --multipliers "" --common-factor 0.9 --duration 300 --hops-from $S/$other.json --out-dir $O/oos-$pol-hops > /dev/null
done
sim --experiment --policies prfaas --no-fluctuation --multipliers "" --common-factor 0.9 --duration 300 --hops-from $S/prfaas.json --out-dir $O/oos-prfaas-ownhops > /dev/null
uptime; date -u
sim --experiment --policies prfaas --no-fluctuation --multipliers "" --common-factor 0.511 --duration 120 --out-dir $O/floor > /dev/null
sim --experiment --policies prfaas --no-fluctuation --multipliers "" --common-factor 0.511 --duration 120 --hops-from /work/main/runs/issue12-item2/prfaas@1.685.json --out-dir $O/floor-hops > /dev/null
/usr/bin/time -f "experiment table: %e s wall %U s user" $PY -c "from prfaas.cli import main; import sys; sys.argv=['prfaas','sim']+sys.argv[1:]; sys.exit(main())" --experiment --duration 60 --multipliers 0.6,0.8,1.0 --no-fluctuation --out-dir $O/table > /dev/null
sim --experiment --policies prfaas --multipliers "" --byte-factor 0.05 --fluct-cut-fraction 0.1 --fluct-rate-factor 0.5 --fluct-duration 180 --out-dir $O/cut05 > /dev/null
uptime; date -u
taskset -c 1 /usr/bin/time -v $PY -c "from prfaas.cli import main; import sys; sys.argv=['prfaas','sim']+sys.argv[1:]; sys.exit(main())" --duration 3600 --no-progress --out-dir $O/case-hour 2>&1 | grep -v "^\s*\(Page\|Swap\|File\|Socket\|Signal\|Average\|Minor\|Major\|Vol\|Invol\|Exit\)"
uptime; date -u
