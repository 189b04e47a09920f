#!/usr/bin/env bash
# Deploy benchmark: continuous deployment of a proxied service under load
# (wrk, 8 keep-alive connections through Dispenser's proxy for the whole
# run), at `delay = 2` and the default `soak = "60s"`. Each round pushes a
# new digest while nothing is soaking ("one push"), then another one while
# the first is in its soak ("during the soak"). It prints the time from the
# end of `docker push` to the first response of the new version, split into
# detection (push -> the watcher's report), pull, start (create + start of
# `<name>-next`) and ready as the daemon logs them ("pulled", "deploy
# phases"). The run ends with SIGTERM during the last soak, timed to the
# daemon's exit, and the requests wrk saw fail. Needs Debian's
# docker-registry and wrk. All traffic stays on 127.0.0.1 and on the network
# this script's Dispenser creates. Writes a section of docs/BENCHMARKS.md
# between the `deploys:begin` and `deploys:end` markers.
#
# Environment: RUNS (rounds, default 2), OUT (default docs/BENCHMARKS.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly RUNS="${RUNS:-2}"
readonly DELAY=2
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly INSTANCE=deploybench
readonly HOST=deploy.test
readonly REGISTRY_PORT=18090
readonly PROXY_PORT=18093
readonly REPO="127.0.0.1:$REGISTRY_PORT/deploybench"

# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools docker docker-registry curl wrk

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
for n in $(seq 1 $((2 * RUNS + 1))); do build_version "v$n"; done
tags+=("$REPO:latest")
push_version v1

cat > "$work/dispenser.toml" <<EOF
delay = $DELAY

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
daemon=$!
pids+=("$daemon")
answer() { curl -s --max-time 2 -H "Host: $HOST" "http://127.0.0.1:$PROXY_PORT/" || true; }
for _ in $(seq 300); do
  [ "$(answer)" = v1 ] && break
  sleep 0.1
done
[ "$(answer)" = v1 ] || { cat "$work/dispenser.log" >&2; echo "v1 never answered" >&2; exit 1; }

# count NEEDLE: how many log lines contain it
count() { grep -cF "$1" "$work/dispenser.log" || true; }
# deploy_row ROUND KIND VERSION: pushes VERSION, waits until the proxy serves
# it and the deploy's phases are logged, prints the table row.
deploy_row() {
  local round=$1 kind=$2 version=$3 phases_before pushed first detected
  phases_before=$(count "deploy phases")
  push_version "$version"
  pushed=$(date +%s.%N)
  until [ "$(answer)" = "$version" ]; do sleep 0.02; done
  first=$(date +%s.%N)
  until [ "$(count "deploy phases")" -gt "$phases_before" ]; do sleep 0.1; done
  detected=$(epoch "$(logged_at "new image in the registry")")
  echo "| $round | $kind | $(ms_between "$pushed" "$first") | $(ms_between "$pushed" "$detected") | $(field pulled pull_ms) | $(field "deploy phases" start_ms) | $(field "deploy phases" ready_ms) |"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
wrk -t2 -c8 -d1h --timeout 5s -H "Host: $HOST" "http://127.0.0.1:$PROXY_PORT/" >"$work/wrk.log" 2>&1 &
load=$!
pids+=("$load")

rows=""
version=1
for round in $(seq 1 "$RUNS"); do
  promoted=$(count "removed the previous container")
  version=$((version + 1))
  row=$(deploy_row "$round" "one push" "v$version")
  echo "$row"
  rows+="$row"$'\n'
  # The push lands 2 s into the previous version's soak.
  sleep 2
  version=$((version + 1))
  row=$(deploy_row "$round" "during the soak" "v$version")
  echo "$row"
  rows+="$row"$'\n'
  if [ "$round" -lt "$RUNS" ]; then
    # the next round's first push comes after this soak ended
    until [ "$(count "removed the previous container")" -gt "$promoted" ]; do sleep 0.5; done
  fi
done

kill -INT "$load"
wait "$load" || true
requests=$(awk '/requests in/ {print $1}' "$work/wrk.log")
non_2xx=$(awk -F': *' '/Non-2xx/ {print $2}' "$work/wrk.log")
errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/wrk.log")
[ -n "$requests" ] || { cat "$work/wrk.log" >&2; echo "wrk printed no summary" >&2; exit 1; }
failed=$(( ${non_2xx:-0} + ${errors:-0} ))

# SIGTERM while the last version soaks (60 s of it are left).
sent=$(date +%s.%N)
kill -TERM "$daemon"
wait "$daemon" || true
exited=$(date +%s.%N)
exit_ms=$(ms_between "$sent" "$exited")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "SIGTERM during a soak: exit in $exit_ms ms; $requests requests, $failed failed"

section="<!-- deploys:begin -->
## Deploys

Measured $(date -u +%Y-%m-%d) on $(nproc) cores (load average $load_start at the start,
$load_end at the end), a local \`docker-registry\` on 127.0.0.1,
\`delay = $DELAY\`, the default \`soak = \"60s\"\`, the \`dispenser-test/upstream\` image
(one new config layer per version), under load: \`wrk -t2 -c8\` through the proxy for the
whole run. Times in milliseconds from the end of \`docker push\`; \"first response\" is the
first \`GET /\` through the proxy answered by the new version (polled every 20 ms). A round
pushes once while nothing soaks (\"one push\"), then again 2 s after that version first
answered, in its soak (\"during the soak\": the soak ends early, the proven version serves
again, and the newer one is deployed at once). Detection depends on where in the 2 s poll
cycle the push lands (0-2 s). Ready includes the 1 s settle of a container without
healthcheck or \`health_path\`. Target: first response within delay + 3 s (${DELAY}000 + 3000 ms).

Command: \`make bench\` (\`bash bench/deploy.sh\`; \`RUNS\` rounds).

| round | push | first response | detection | pull | start | ready |
| --- | --- | --- | --- | --- | --- | --- |
${rows}
SIGTERM during the last soak: the daemon exited in **${exit_ms} ms** (target: 5000 ms).
Requests through the proxy until then: ${requests}, of which **${failed} failed** (non-2xx
answers and socket errors together).
<!-- deploys:end -->"

write_section "$OUT" deploys "$section"
echo "written to $OUT"
