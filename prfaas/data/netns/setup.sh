#!/usr/bin/env bash
# Two network namespaces joined by a veth pair, shaped with tbf (rate) and netem (delay) where the
# kernel has it. Idempotent: re-running replaces the shaping. Needs root.
#   deploy/netns/setup.sh [RATE] [DELAY_MS]      e.g. setup.sh 1gbit 0
# Env: PRFAAS_NS_PREFIX (default prfaas), addresses 10.77.0.1 (a) and 10.77.0.2 (b).
set -euo pipefail
RATE=${1:-1gbit}
DELAY_MS=${2:-0}
P=${PRFAAS_NS_PREFIX:-prfaas}
A=${P}-a B=${P}-b
for ns in "$A" "$B"; do ip netns list | grep -qw "$ns" || ip netns add "$ns"; done
if ! ip -n "$A" link show veth-a >/dev/null 2>&1; then
  ip link add "${P}-va" type veth peer name "${P}-vb"
  ip link set "${P}-va" netns "$A" name veth-a
  ip link set "${P}-vb" netns "$B" name veth-b
fi
ip -n "$A" addr replace 10.77.0.1/24 dev veth-a
ip -n "$B" addr replace 10.77.0.2/24 dev veth-b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set veth-a up
ip -n "$B" link set veth-b up
# Burst must cover one timer tick at the rate (about rate/250 bytes), or tbf caps below RATE.
shape() {
  local ns=$1 dev=$2
  if [ "$DELAY_MS" != "0" ] && ip netns exec "$ns" tc qdisc replace dev "$dev" root handle 1: netem delay "${DELAY_MS}ms" 2>/dev/null; then
    ip netns exec "$ns" tc qdisc replace dev "$dev" parent 1: handle 2: tbf rate "$RATE" burst 4mb latency 100ms
  else
    [ "$DELAY_MS" != "0" ] && echo "netem unavailable: no delay on $dev (use prfaas link for delay)" >&2
    ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$RATE" burst 4mb latency 100ms
  fi
}
shape "$A" veth-a
shape "$B" veth-b
echo "netns $A (10.77.0.1) <-> $B (10.77.0.2): rate $RATE delay ${DELAY_MS}ms"
