#!/usr/bin/env bash
# A private Docker daemon for trying the compose deployment on a host that runs none (issue 17
# item 5): Debian's docker.io (`dockerd` with its managed containerd), as root, with its own data
# root, exec root and socket under ROOT, and no default bridge (`docker0`): compose makes its own
# bridge networks, and images are built with `--network host`. Needs iptables.
#
#   deploy/compose/dockerd_local.sh start [ROOT]   # prints DOCKER_HOST=unix://ROOT/docker.sock
#   deploy/compose/dockerd_local.sh stop  [ROOT]   # stops it (containers die with it)
#   deploy/compose/dockerd_local.sh purge [ROOT]   # stop, then remove ROOT (images, volumes)
#
# ROOT defaults to $PRFAAS_DOCKERD_ROOT or /tmp/prfaas-dockerd. The daemon's log: ROOT/dockerd.log.
set -euo pipefail
cmd=${1:?usage: dockerd_local.sh start|stop|purge [ROOT]}
ROOT=${2:-${PRFAAS_DOCKERD_ROOT:-/tmp/prfaas-dockerd}}
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
START_TIMEOUT=${DOCKERD_START_TIMEOUT:-60}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

stop() {
  if running; then
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd $pid did not stop in 30 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # dockerd's managed containerd normally leaves with it; one left behind still holds ROOT.
  if [ -f "$ROOT/exec/containerd/containerd.pid" ]; then
    cpid=$(cat "$ROOT/exec/containerd/containerd.pid")
    kill "$cpid" 2>/dev/null || true
  fi
  # Mounts a killed daemon left (overlay layers, netns files) would block the removal of ROOT.
  if [ -d "$ROOT" ]; then
    awk -v r="$ROOT/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r \
      | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
}

case "$cmd" in
  start)
    if running && docker -H "unix://$SOCK" version >/dev/null 2>&1; then
      echo "DOCKER_HOST=unix://$SOCK"
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd not found (apt-get install docker.io)" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "dockerd_local.sh: needs root" >&2; exit 2; }
    mkdir -p "$ROOT/data" "$ROOT/exec"
    # setsid: the daemon outlives the shell that started it, and a Ctrl-C there does not reach it.
    setsid dockerd --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$PIDFILE" \
      --host "unix://$SOCK" --bridge none >"$ROOT/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 $((START_TIMEOUT * 2))); do
      if docker -H "unix://$SOCK" version >/dev/null 2>&1; then
        echo "DOCKER_HOST=unix://$SOCK"
        exit 0
      fi
      if ! kill -0 $! 2>/dev/null; then break; fi
      sleep 0.5
    done
    echo "dockerd did not start; the end of $ROOT/dockerd.log:" >&2
    tail -n 20 "$ROOT/dockerd.log" >&2
    stop
    exit 1
    ;;
  stop) stop ;;
  purge)
    stop
    rm -rf "$ROOT"
    ;;
  *) echo "usage: dockerd_local.sh start|stop|purge [ROOT]" >&2; exit 2 ;;
esac
