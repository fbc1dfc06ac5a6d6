#!/usr/bin/env bash
# The two-datacenter compose deployment on a Docker host that reaches no image registry (issue 17
# item 5): both images from Debian packages and a local torch wheel, then `docker-compose up`.
#
#   deploy/compose/up_local.sh build   # prfaas-base:bookworm (cached) and prfaas:local
#   deploy/compose/up_local.sh up      # build, start every service but Grafana, wait for the router
#   deploy/compose/up_local.sh down    # docker-compose down -v (containers, networks, volumes)
#
# Needs a running dockerd (DOCKER_HOST; deploy/compose/dockerd_local.sh starts a private one),
# docker-compose (v1, Debian's package; the v2 plugin works too: COMPOSE="docker compose"), git, and
# for the base image root and debootstrap (deploy/compose/build_base_image.sh).
#
# Settings (environment):
#   REF                 git revision whose files go into the image (HEAD): the build context is a
#                       `git archive` of it, so nothing untracked or uncommitted gets in (Debian's
#                       docker.io has no BuildKit and ignores Dockerfile.dockerignore)
#   PRFAAS_BASE_IMAGE   base image (prfaas-base:bookworm); built when missing
#   BASE_ROOTFS         debootstrap cache of build_base_image.sh (/var/cache/prfaas/bookworm-rootfs)
#   TORCH_VERSION       2.13.0
#   TORCH_WHEEL         a torch wheel file for the image's Python 3.11 (the CPU build); by default
#                       `pip download --no-index` finds one in pip's local wheel directories
#                       (find-links); none: the build downloads torch from TORCH_INDEX_URL
#   TORCH_INDEX_URL     the CPU wheel index; pypi.org's simple index when a wheel file is given (the
#                       local +cpu wheel outranks pypi's CUDA build of the same version)
#   COMPOSE_PROJECT     compose project name (prfaas-local)
#   LINK_SHAPING        relay (the relays delay and cap the rate), tbf (the relays delay, tbf in the
#                       link container caps the rate: kernels without sch_netem) or netem (the
#                       kernel does both); default tbf
#   LINK_DELAY_MS, LINK_RATE_MBIT, PRFAAS_BACKEND, PRFAAS_POLICY, PRFAAS_BIND: as in the compose file
#   PRFAAS_HTTP_PORT    the router's published port (8000); PROMETHEUS_PORT (9090)
#   PRFAAS_KV_SECRET    generated when unset
#   UP_TIMEOUT          seconds to wait for the router's /health on the published port (600)
set -euo pipefail
cmd=${1:?usage: up_local.sh build|up|down}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
COMPOSE_FILE="$HERE/docker-compose.yml"
REF=${REF:-HEAD}
BASE=${PRFAAS_BASE_IMAGE:-prfaas-base:bookworm}
BASE_ROOTFS=${BASE_ROOTFS:-/var/cache/prfaas/bookworm-rootfs}
IMAGE=prfaas:local  # the compose file's `image:`
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PROJECT=${COMPOSE_PROJECT:-prfaas-local}
SHAPING=${LINK_SHAPING:-tbf}
read -r -a COMPOSE <<<"${COMPOSE:-docker-compose}"

CTX=""
trap '[ -z "$CTX" ] || rm -rf "$CTX"' EXIT

log() { echo "up_local.sh: $*" >&2; }

image_label() {  # image label
  docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

find_wheel() {
  if [ -n "${TORCH_WHEEL:-}" ]; then echo "$TORCH_WHEEL"; return; fi
  local dir
  dir=$(mktemp -d)
  if python3 -m pip download --quiet --no-index --no-deps --only-binary :all: \
      --python-version 3.11 --platform manylinux_2_28_x86_64 \
      -d "$dir" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    ls "$dir"/torch-*.whl
  fi
}

build_base() {
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "$BASE is there"
    return
  fi
  log "building $BASE (rootfs cache $BASE_ROOTFS)"
  "$HERE/build_base_image.sh" "$BASE" "$BASE_ROOTFS"
}

build_image() {
  local wheel source ctx index
  wheel=$(find_wheel)
  # What goes into the image: the archived paths at REF, the base image and the wheel. A current
  # image (same source label) is kept; anything else rebuilds (docker's layer cache still applies).
  source=$( (git -C "$REPO" rev-parse "$REF:pyproject.toml" "$REF:README.md" "$REF:proto" \
    "$REF:prfaas" "$REF:deploy/compose"; docker image inspect --format '{{.Id}}' "$BASE"; \
    basename "${wheel:-none}") | sha256sum | cut -c1-16)
  if [ "$(image_label "$IMAGE" org.prfaas.source)" = "$source" ]; then
    log "$IMAGE is current (source $source)"
    return
  fi
  ctx=$(mktemp -d)
  CTX=$ctx  # removed on exit
  git -C "$REPO" archive --format=tar "$REF" pyproject.toml README.md proto prfaas deploy/compose \
    | tar -x -C "$ctx"
  if [ -n "$wheel" ]; then
    cp "$wheel" "$ctx/deploy/compose/wheels/"
    index=${TORCH_INDEX_URL:-https://pypi.org/simple}
    log "torch from $(basename "$wheel")"
  else
    index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
    log "no local torch wheel: torch $TORCH_VERSION from $index"
  fi
  log "building $IMAGE from $REF ($(git -C "$REPO" rev-parse --short "$REF"), source $source)"
  docker build --network host -f "$ctx/deploy/compose/Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_INDEX_URL=$index" \
    --build-arg "TORCH_VERSION=$TORCH_VERSION" \
    --label "org.prfaas.source=$source" \
    --label "org.prfaas.revision=$(git -C "$REPO" rev-parse "$REF")" \
    -t "$IMAGE" "$ctx"
}

compose() {
  # Every compose command interpolates the file, which requires the secret: `down` gets a dummy.
  PRFAAS_KV_SECRET=${PRFAAS_KV_SECRET:-unused-for-down} PRFAAS_BASE_IMAGE="$BASE" \
    PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-$BASE} \
    "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}

up() {
  local services=(router prfaas-0 pd-0 pd-1 link prometheus) profile=()
  case "$SHAPING" in
    relay) ;;
    tbf)
      export NETEM_QDISC=tbf NETEM_RATE_MBIT=${LINK_RATE_MBIT:-1000} LINK_RATE_MBIT=0
      profile=(--profile netem); services+=(link-netem) ;;
    netem)
      export NETEM_QDISC=netem NETEM_DELAY_MS=${LINK_DELAY_MS:-5} \
        NETEM_RATE_MBIT=${LINK_RATE_MBIT:-1000} LINK_DELAY_MS=0 LINK_RATE_MBIT=0
      profile=(--profile netem); services+=(link-netem) ;;
    *) log "LINK_SHAPING must be relay, tbf or netem"; exit 2 ;;
  esac
  if [ -z "${PRFAAS_KV_SECRET:-}" ]; then
    PRFAAS_KV_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    export PRFAAS_KV_SECRET
  fi
  # Grafana is left out: its image comes from a registry only (its provisioning is checked
  # statically by tests/deploy). --no-build: compose's own build would send the whole checkout.
  compose "${profile[@]}" up -d --no-build "${services[@]}"
  local url="http://${PRFAAS_BIND:-127.0.0.1}:${PRFAAS_HTTP_PORT:-8000}/health"
  local deadline=$((SECONDS + ${UP_TIMEOUT:-600}))
  until python3 -c "import urllib.request; urllib.request.urlopen('$url', timeout=2)" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the router did not answer $url"
      compose "${profile[@]}" ps >&2
      exit 1
    fi
    sleep 2
  done
  log "router up: ${url%/health}/v1 (Prometheus: http://${PRFAAS_BIND:-127.0.0.1}:${PROMETHEUS_PORT:-9090})"
}

case "$cmd" in
  build) build_base; build_image ;;
  up) build_base; build_image; up ;;
  down) compose --profile netem down -v --remove-orphans ;;
  *) log "usage: up_local.sh build|up|down"; exit 2 ;;
esac
