#!/usr/bin/env bash
# Remove the namespaces created by setup.sh (the veth pair goes with them). Idempotent.
set -euo pipefail
P=${PRFAAS_NS_PREFIX:-prfaas}
for ns in "${P}-a" "${P}-b"; do
  if ip netns list | grep -qw "$ns"; then ip netns del "$ns"; fi
done
