#!/bin/bash
# issue 18 item 4 at 11fa9e5 (/tmp/h18-wt3), one core, under the lock (caller).
cd /tmp/h18-wt3; export PYTHONPATH=/tmp/h18-wt3
PY=/work/main/.venv/bin/python
F='^\s*\(Page\|Swap\|File\|Socket\|Signal\|Average\|Minor\|Major\|Vol\|Invol\|Exit\)'
for args in "--duration 3600 --no-progress --out-dir /tmp/h18/case-11fa" "--instances-factor 104 --duration 3600 --no-progress --out-dir /tmp/h18/10k-11fa"; do
  uptime; date -u
  taskset -c 1 /usr/bin/time -v $PY -c "from prfaas.cli import main; import sys; sys.argv=['prfaas','sim']+sys.argv[1:]; sys.exit(main())" $args 2>&1 | grep -v "$F"
done
uptime; date -u
