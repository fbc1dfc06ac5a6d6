#!/bin/sh
# netem profile: shape the link container's interfaces with the kernel's netem qdisc.
# Runs in the link container's network namespace (network_mode: service:link) with NET_ADMIN.
# Needs sch_netem in the host kernel; fails loudly where it is missing (then use the relay).
#   NETEM_DELAY_MS  one-way delay per interface (both directions are shaped)
#   NETEM_JITTER_MS jitter
#   NETEM_RATE_MBIT rate per interface
#   NETEM_LOSS_PCT  random loss in percent
#   NETEM_QDISC     netem (default) or tbf: the rate alone with tbf, for kernels without sch_netem
#                   (keep the relay's delay then: LINK_DELAY_MS, LINK_RATE_MBIT=0)
set -eu
delay=${NETEM_DELAY_MS:-5}
jitter=${NETEM_JITTER_MS:-0}
rate=${NETEM_RATE_MBIT:-1000}
loss=${NETEM_LOSS_PCT:-0}
qdisc=${NETEM_QDISC:-netem}
# tbf's burst must cover one timer tick at the rate (rate/250 bytes), or it caps below the rate.
burst=$((rate * 500))
[ "$burst" -ge 16000 ] || burst=16000
ifaces=$(ls /sys/class/net | grep -v '^lo$')
[ -n "$ifaces" ] || { echo "netem.sh: no interfaces" >&2; exit 1; }
for dev in $ifaces; do
    case "$qdisc" in
        netem) tc qdisc replace dev "$dev" root netem delay "${delay}ms" "${jitter}ms" \
                   rate "${rate}mbit" loss "${loss}%" ;;
        tbf) tc qdisc replace dev "$dev" root tbf rate "${rate}mbit" burst "$burst" latency 100ms ;;
        *) echo "netem.sh: NETEM_QDISC must be netem or tbf, not $qdisc" >&2; exit 2 ;;
    esac
    tc qdisc show dev "$dev"
done
# Stay up so `docker-compose ps` shows the shaping is applied; clear it on stop.
trap 'for dev in $ifaces; do tc qdisc del dev "$dev" root 2>/dev/null || true; done; exit 0' INT TERM
while :; do sleep 3600 & wait $!; done
