#!/bin/bash
# Issue 16 item 3 measurement (helper h6). Runs under flock /tmp/lead/measure.lock.
PY=/work/main/.venv/bin/python
export OMP_WAIT_POLICY=PASSIVE
OUT=/tmp/h6/results; mkdir -p $OUT
echo "start $(date -u +%FT%TZ) $(cat /proc/loadavg)" > $OUT/log.txt
for r in 1 2; do for w in before after; do
  (cd /tmp/h6-$w && PYTHONPATH=/tmp/h6-$w timeout 200 $PY -m prfaas.cli bench transfer --json --scenario loopback --loopback-trials 15 > $OUT/loopback_${w}_$r.json 2>>$OUT/err.txt)
  echo "loopback $w $r rc=$? $(date -u +%T) $(cat /proc/loadavg)" >> $OUT/log.txt
done; done
cd /tmp/h6-after && PYTHONPATH=/tmp/h6-after timeout 400 $PY -m prfaas.cli bench transfer --json --scenario netns --netns-prefix h6x --netns-rounds 5 > $OUT/netns.json 2>>$OUT/err.txt
echo "netns rc=$? $(date -u +%T) $(cat /proc/loadavg)" >> $OUT/log.txt
ip netns list | grep h6x >> $OUT/log.txt
echo "end $(date -u +%FT%TZ) $(cat /proc/loadavg)" >> $OUT/log.txt
