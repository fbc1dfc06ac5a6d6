#!/usr/bin/env bash
# Two router replicas + self-registering emulated workers, serving `prfaas bench serve` through
# both routers at once (issue 17, "Done when": a deployment with two routers and self-registering
# workers serves the experiment workload with no failed request).
#
# Routers: `prfaas router --workers registered` (no workers in their topology); every worker gets
# `--router A,B` and registers with both, as a Kubernetes headless Service resolves to one address
# per router pod. The workload (`prfaas bench serve`, the shipped conversation trace by default) is
# split in two halves sent at once, one per router; each half's run.json counts its failures.
#
#   scripts/two_routers_serve.sh OUT_DIR [PORT_BASE] [REQUESTS_PER_ROUTER] [RATE_PER_ROUTER] \
#     [bench serve options...]
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [PORT_BASE] [REQUESTS_PER_ROUTER] [RATE_PER_ROUTER]}
BASE=${2:-37000}
N=${3:-60}
RATE=${4:-1.0}
EXTRA=("${@:5}")
PY=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE_PD=$ROOT/prfaas/data/case_study/h20_8gpu_prefill.csv
PROFILE_PRFAAS=$ROOT/prfaas/data/case_study/h200_8gpu_prefill.csv
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
cat >"$OUT/router.toml" <<EOF
[deployment]
backend = "emulated"
model_preset = "small"
[emulated]
prfaas_profile = "$PROFILE_PRFAAS"
pd_profile = "$PROFILE_PD"
EOF

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT

routers=""
for i in 0 1; do
  http=$((BASE + i)) grpc=$((BASE + 10 + i))
  $PY -m prfaas.cli router --workers registered --topology "$OUT/router.toml" --policy prfaas \
    --http-port "$http" --grpc-port "$grpc" >"$OUT/router-$i.log" 2>&1 &
  pids+=($!)
  routers+="${routers:+,}127.0.0.1:$grpc"
done

worker() {  # kind id grpc_port [pd role kv_port]
  local kind=$1 id=$2 port=$3
  local args=(--worker-id "$id" --grpc-port "$port" --backend emulated
    --router "$routers" --register-interval-s 1 --time-factor 0.1 --byte-factor 0.001
    --block-size 256)
  if [ "$kind" = prefill ]; then
    args+=(--cluster prfaas --profile "$PROFILE_PRFAAS")
  else
    args+=(--cluster pd --profile "$PROFILE_PD" --role "$4" --kv-port "$5")
  fi
  $PY -m prfaas.cli "$kind-worker" "${args[@]}" >"$OUT/$id.log" 2>&1 &
  pids+=($!)
}
worker prefill prfaas-0 $((BASE + 20))
worker pd pd-0 $((BASE + 21)) prefill $((BASE + 31))
worker pd pd-1 $((BASE + 22)) decode $((BASE + 32))
worker pd pd-2 $((BASE + 23)) decode $((BASE + 33))

for i in 0 1; do
  for _ in $(seq 240); do
    curl -sf "http://127.0.0.1:$((BASE + i))/ready" >/dev/null && break
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$((BASE + i))/ready" >/dev/null || { echo "router $i not ready"; exit 1; }
done
sleep 3  # every worker registered with both routers (ready needs one of each role)

cat /proc/loadavg >"$OUT/loadavg-start"
for i in 0 1; do
  $PY -m prfaas.cli bench serve --url "http://127.0.0.1:$((BASE + i))/v1" -n "$N" --rate "$RATE" \
    --seed $((i + 1)) --out-dir "$OUT" --name "router-$i" --no-progress \
    --metrics-url "http://127.0.0.1:$((BASE + i))/metrics" "${EXTRA[@]}" >"$OUT/bench-$i.txt" 2>&1 &
  bench[i]=$!
done
status=0
for i in 0 1; do wait "${bench[i]}" || status=$?; done
cat /proc/loadavg >"$OUT/loadavg-end"
for i in 0 1; do tail -25 "$OUT/bench-$i.txt"; done
exit $status
