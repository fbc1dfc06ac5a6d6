#!/bin/sh
# The cross-datacenter link container: one `prfaas link` relay per route, all in this container,
# which is the only one attached to both datacenter networks.
#   LINK_ROUTES    space-separated LISTEN_PORT=TARGET_HOST:TARGET_PORT entries
#   LINK_DELAY_MS  one-way delay per direction (0 when the netem profile shapes the link instead)
#   LINK_JITTER_MS extra uniform delay
#   LINK_RATE_MBIT rate cap per direction and per route (0: none)
#   LINK_METRICS_BASE_PORT  the i-th route's relay (from 0) serves Prometheus /metrics on this
#                  port + i (prfaas_relay_* metrics); unset or 0: no metrics
# Exits as soon as any relay exits, so the container restarts as a whole.
set -eu
: "${LINK_ROUTES:?LINK_ROUTES is empty}"
metrics_base=${LINK_METRICS_BASE_PORT:-0}
pids=""
i=0
for route in $LINK_ROUTES; do
    port=${route%%=*}
    target=${route#*=}
    metrics_port=0
    if [ "$metrics_base" -gt 0 ]; then metrics_port=$((metrics_base + i)); fi
    prfaas link --listen "0.0.0.0:${port}" --target "${target}" \
        --delay-ms "${LINK_DELAY_MS:-0}" --jitter-ms "${LINK_JITTER_MS:-0}" \
        --rate-mbit "${LINK_RATE_MBIT:-0}" --metrics-port "${metrics_port}" &
    pids="$pids $!"
    i=$((i + 1))
done
trap 'kill $pids 2>/dev/null' INT TERM
# POSIX sh has no `wait -n`: poll until one relay is gone, then stop the others.
while :; do
    for pid in $pids; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "link.sh: relay $pid exited; stopping" >&2
            kill $pids 2>/dev/null || true
            exit 1
        fi
    done
    sleep 1
done
