#!/usr/bin/env bash
# The example's own image registry: Debian's `docker-registry` on the address
# `registry` of dispenser.vars (127.0.0.1 only), its storage, config, log and
# pid under example/.state/registry/ (git-ignored).
#
#   registry.sh start          starts it in the background; a running one is reused
#   registry.sh publish first  pushes version 1 of the web image, unless the
#                              registry already has one (a restart keeps it)
#   registry.sh publish next   builds and pushes the next version
#   registry.sh stop           ends it and removes example/.state/
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
readonly STATE="$HERE/.state"
readonly DIR="$STATE/registry"
readonly PID_FILE="$DIR/registry.pid"
readonly VERSION_FILE="$STATE/web-version"
# The one place the address is written: the services read the same variable.
ADDRESS="$(sed -n 's/^registry *= *"\(.*\)".*/\1/p' "$HERE/dispenser.vars")"
readonly ADDRESS
readonly REPOSITORY=dispenser-example/web
readonly IMAGE="$ADDRESS/$REPOSITORY:latest"

fail() {
  echo "registry.sh: $*" >&2
  exit 1
}

# running: the recorded pid is a live docker-registry.
running() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q docker-registry
}

answers() {
  curl -fsS --max-time 2 -o /dev/null "http://$ADDRESS/v2/" 2>/dev/null
}

start() {
  [[ -n "$ADDRESS" ]] || fail "no \`registry = \"HOST:PORT\"\` line in $HERE/dispenser.vars"
  if running; then
    answers || fail "docker-registry (pid $(cat "$PID_FILE")) runs but http://$ADDRESS/v2/ does not answer; see $DIR/registry.log"
    echo "registry http://$ADDRESS/ (pid $(cat "$PID_FILE"), reused)"
    return
  fi
  if answers; then
    fail "something else already answers on $ADDRESS: stop it, or change \`registry\` in dispenser.vars"
  fi
  command -v docker-registry >/dev/null || fail "docker-registry not found (make deps-example installs it)"
  mkdir -p "$DIR/data"
  cat >"$DIR/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDRESS
YAML
  # Its own session: stopping `make example` (Ctrl-C) leaves it running, so
  # the next `make example` reuses it; `make example-clean` ends it.
  setsid docker-registry serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local tries=0
  until answers; do
    running || fail "docker-registry exited; see $DIR/registry.log"
    ((++tries < 100)) || fail "docker-registry does not answer on $ADDRESS after 10 s; see $DIR/registry.log"
    sleep 0.1
  done
  echo "registry http://$ADDRESS/ (pid $(cat "$PID_FILE"), storage $DIR/data)"
}

# has_web: the registry holds the web image's tag.
has_web() {
  curl -fsS --max-time 5 -o /dev/null -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$ADDRESS/v2/$REPOSITORY/manifests/latest" 2>/dev/null
}

publish() {
  if ! running || ! answers; then
    fail "the example's registry is not running: run \`make example\` first"
  fi
  local version
  case "${1:-}" in
    first)
      if has_web && [[ -f "$VERSION_FILE" ]]; then
        echo "kept   $IMAGE: version $(cat "$VERSION_FILE") (\`make example-push\` pushes the next)"
        return
      fi
      version=1
      ;;
    next)
      has_web || fail "the registry has no $REPOSITORY yet: run \`make example\` first"
      version=$(($(cat "$VERSION_FILE" 2>/dev/null || echo 0) + 1))
      ;;
    *) fail "usage: registry.sh publish first|next" ;;
  esac
  bash "$HERE/build-images.sh" web "$version" "$IMAGE"
  docker push "$IMAGE" >/dev/null
  echo "$version" >"$VERSION_FILE"
  echo "pushed $IMAGE: version $version"
}

stop() {
  if running; then
    local pid
    pid="$(cat "$PID_FILE")"
    kill "$pid"
    local tries=0
    while kill -0 "$pid" 2>/dev/null; do
      ((++tries < 50)) || { kill -9 "$pid" 2>/dev/null || true; break; }
      sleep 0.1
    done
    echo "stopped the registry (pid $pid)"
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  publish) publish "${2:-}" ;;
  stop) stop ;;
  *) fail "usage: registry.sh start|publish first|publish next|stop" ;;
esac
