#!/usr/bin/env bash
# Deploy benchmark: the time from the end of a `docker push` of a new digest
# to the first response of the new version through Dispenser's proxy, at
# `delay = 5`, split into detection (push -> the watcher's report), pull,
# start (create + start of `<name>-next`), ready, swap and drain, as the
# daemon logs them ("pulled", "deploy phases"). Needs Debian's
# docker-registry. All traffic stays on 127.0.0.1 and on the network this
# script's Dispenser creates. Writes a section of docs/BENCHMARKS.md between
# the `deploys:begin` and `deploys:end` markers.
#
# Environment: RUNS (deploys measured, default 3), OUT (default docs/BENCHMARKS.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly RUNS="${RUNS:-3}"
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly INSTANCE=deploybench
readonly HOST=deploy.test
readonly REGISTRY_PORT=18090
readonly PROXY_PORT=18093
readonly REPO="127.0.0.1:$REGISTRY_PORT/deploybench"

# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools docker docker-registry curl

work="$(mktemp -d)"
pids=()
tags=()
cleanup() {
  stop_pids "${pids[@]}"
  remove_instance "$INSTANCE"
  for tag in "${tags[@]}"; do docker rmi -f "$tag" >/dev/null 2>&1 || true; done
  # the images the daemon pulled by digest carry no tag
  docker images -q "$REPO" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash tests/images/build.sh >/dev/null
cargo build --release --quiet

# epoch seconds (with fraction) of an RFC 3339 timestamp
epoch() { date -d "$1" +%s.%N; }
# the timestamp of the last log line containing $1
logged_at() { grep -F "$1" "$work/dispenser.log" | tail -n1 | awk '{print $1}'; }
# the value of field $2 on the last log line containing $1
field() { grep -F "$1" "$work/dispenser.log" | tail -n1 | grep -o "$2=[0-9]*" | cut -d= -f2; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

mkdir -p "$work/registry" "$work/web"
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null && break
  sleep 0.1
done

build_version() {
  local version=$1 context="$work/build-$1"
  mkdir -p "$context"
  printf 'FROM dispenser-test/upstream:latest\nENV VERSION=%s\n' "$version" >"$context/Dockerfile"
  docker build -q -t "dispenser-test/deploybench:$version" "$context" >/dev/null 2>&1
  tags+=("dispenser-test/deploybench:$version")
}
push_version() {
  docker tag "dispenser-test/deploybench:$1" "$REPO:latest"
  docker push -q "$REPO:latest" >/dev/null
}
for n in $(seq 1 $((RUNS + 1))); do build_version "v$n"; done
tags+=("$REPO:latest")
push_version v1

cat > "$work/dispenser.toml" <<EOF
delay = 5

[deploy]
soak = "0s"

[proxy]
strategy = "http-only"
http_listen = "127.0.0.1:$PROXY_PORT"

[daemon]
instance = "$INSTANCE"
state_dir = "$work/state"

[daemon.network]
name = "$INSTANCE-net"
subnet = "10.252.0.0/24"

[[service]]
path = "web"
EOF
cat > "$work/web/service.toml" <<EOF
[service]
name = "$INSTANCE-web"
image = "$REPO:latest"

[dispenser]
watch = true

[proxy]
host = "$HOST"
service_port = 8080
EOF
target/release/dispenser -c "$work/dispenser.toml" -p "$work/dispenser.pid" >"$work/dispenser.log" 2>&1 &
pids+=("$!")
answer() { curl -s --max-time 2 -H "Host: $HOST" "http://127.0.0.1:$PROXY_PORT/" || true; }
for _ in $(seq 300); do
  [ "$(answer)" = v1 ] && break
  sleep 0.1
done
[ "$(answer)" = v1 ] || { cat "$work/dispenser.log" >&2; echo "v1 never answered" >&2; exit 1; }

rows=""
for n in $(seq 2 $((RUNS + 1))); do
  done_before=$(grep -c "deploy phases" "$work/dispenser.log" || true)
  push_version "v$n"
  pushed=$(date +%s.%N)
  until [ "$(answer)" = "v$n" ]; do sleep 0.02; done
  first=$(date +%s.%N)
  until [ "$(grep -c "deploy phases" "$work/dispenser.log" || true)" -gt "$done_before" ]; do sleep 0.1; done
  detected=$(epoch "$(logged_at "new image in the registry")")
  row="| v$n | $(ms_between "$pushed" "$first") | $(ms_between "$pushed" "$detected") | $(field pulled pull_ms) | $(field "deploy phases" start_ms) | $(field "deploy phases" ready_ms) | $(field "deploy phases" swap_ms) | $(field "deploy phases" drain_ms) |"
  echo "$row"
  rows+="$row"$'\n'
done

section="<!-- deploys:begin -->
## Deploys

Measured $(date -u +%Y-%m-%d) on $(nproc) cores, a local \`docker-registry\` on 127.0.0.1,
\`delay = 5\`, \`[deploy] soak = \"0s\"\`, the \`dispenser-test/upstream\` image (one new
config layer per version). Times in milliseconds from the end of \`docker push\`; \"first
response\" is the first \`GET /\` through the proxy answered by the new version (polled
every 20 ms). Detection depends on where in the 5 s poll cycle the push lands (0-5 s).
Ready includes the 1 s settle of a container without healthcheck or \`health_path\`.
Drain starts at the swap, so the first response comes before it ends.

Command: \`make bench\` (\`bash bench/deploy.sh\`; \`RUNS\` deploys in a row).

| version | first response | detection | pull | start | ready | swap | drain |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows}<!-- deploys:end -->"

write_section "$OUT" deploys "$section"
echo "written to $OUT"
