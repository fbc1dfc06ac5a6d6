#!/bin/sh
# netem profile: shape the link container's interfaces with the kernel's netem qdisc.
# Runs in the link container's network namespace (network_mode: service:link) with NET_ADMIN.
# Needs sch_netem in the host kernel; fails loudly where it is missing (then use the relay).
#   NETEM_DELAY_MS  one-way delay per interface (both directions are shaped)
#   NETEM_JITTER_MS jitter
#   NETEM_RATE_MBIT rate per interface
#   NETEM_LOSS_PCT  random loss in percent
set -eu
delay=${NETEM_DELAY_MS:-5}
jitter=${NETEM_JITTER_MS:-0}
rate=${NETEM_RATE_MBIT:-1000}
loss=${NETEM_LOSS_PCT:-0}
ifaces=$(ls /sys/class/net | grep -v '^lo$')
[ -n "$ifaces" ] || { echo "netem.sh: no interfaces" >&2; exit 1; }
for dev in $ifaces; do
    tc qdisc replace dev "$dev" root netem delay "${delay}ms" "${jitter}ms" \
        rate "${rate}mbit" loss "${loss}%"
    tc qdisc show dev "$dev"
done
# Stay up so `docker-compose ps` shows the shaping is applied; clear it on stop.
trap 'for dev in $ifaces; do tc qdisc del dev "$dev" root 2>/dev/null || true; done; exit 0' INT TERM
while :; do sleep 3600 & wait $!; done
