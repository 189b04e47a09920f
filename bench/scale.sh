#!/usr/bin/env bash
# Scale benchmark: one daemon with 50 services from the test images, 20 of
# them behind the proxy (web:v1 on a 127.0.0.1 listener) and 30 watched
# against a local Debian `docker-registry` (busybox pushed under IMAGES
# repositories, so several services share each watched image). Measures:
#   (a) start to READY=1 on a host with none of the containers,
#   (b) start to READY=1 with all 50 running and unchanged, proving by
#       container id and StartedAt that none was restarted,
#   (c) a reload (`dispenser -s reload`) that changes one service, to the
#       READY=1 after RELOADING=1, proving only that container changed,
#   (d) the daemon's idle memory (VmRSS, VmHWM) and CPU (utime + stime)
#       over IDLE_SECONDS,
#   (e) registry requests per polling round, from the registry's access log.
# READY is systemd's notification: the daemon gets NOTIFY_SOCKET pointing at
# a datagram socket that bench/notify_listen.rs (built with rustc) listens on.
# Everything carries the instance `scalebench` (names, labels, network
# 10.253.0.0/24); the EXIT trap stops the daemon and the registry and removes
# the containers, network and tags, even on failure. All traffic stays on
# 127.0.0.1 and the network this script's daemon creates. Writes a section of
# docs/BENCHMARKS.md between the `scale:begin` and `scale:end` markers.
#
# Environment: IDLE_SECONDS (default 30), DELAY (seconds between registry
# polls, default 10), IMAGES (distinct watched images, default 10), OUT
# (default docs/BENCHMARKS.md), DISPENSER (a binary to measure instead of
# building target/release/dispenser).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly IDLE_SECONDS="${IDLE_SECONDS:-30}"
readonly DELAY="${DELAY:-10}"
readonly IMAGES="${IMAGES:-10}"
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly DISPENSER="${DISPENSER:-target/release/dispenser}"
readonly ROUTED=20
readonly WATCHED=30
readonly SERVICES=$((ROUTED + WATCHED))
readonly INSTANCE=scalebench
readonly SUBNET=10.253.0.0/24
readonly REGISTRY_PORT=18110
readonly PROXY_PORT=18113
readonly REGISTRY="127.0.0.1:$REGISTRY_PORT"
readonly DOMAIN=scale.test
# The service the reload changes.
readonly CHANGED="$INSTANCE-web-01"

# Rounds are told apart in the registry's log by a gap of 3 s or more.
((DELAY >= 4)) || { echo "DELAY must be at least 4 seconds" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools docker docker-registry curl rustc

work="$(mktemp -d)"
daemon_pid=""
pids=()
tags=()
cleanup() {
  # The daemon first, so it cannot recreate what is removed below.
  if [[ -n "$daemon_pid" ]]; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
  stop_pids "${pids[@]}"
  remove_instance "$INSTANCE"
  for tag in "${tags[@]}"; do docker rmi "$tag" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "error: $*" >&2
  if [[ -f "$work/dispenser.log" ]]; then tail -n 40 "$work/dispenser.log" >&2; fi
  exit 1
}

# Leftovers of an interrupted run of this benchmark (only its instance).
remove_instance "$INSTANCE"
bash tests/images/build.sh >/dev/null
if [[ "$DISPENSER" == target/release/dispenser ]]; then
  cargo build --release --quiet
fi
rustc -O --edition 2021 bench/notify_listen.rs -o "$work/notify-listen"

# --- the registry, holding IMAGES repositories of the busybox image --------
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $REGISTRY
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
  curl -sf "http://$REGISTRY/v2/" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$REGISTRY/v2/" >/dev/null || fail "the registry did not start on $REGISTRY (port taken?)"
for k in $(seq 1 "$IMAGES"); do
  tag="$REGISTRY/$INSTANCE-$k:latest"
  docker tag dispenser-test/busybox:latest "$tag"
  tags+=("$tag")
  docker push -q "$tag" >/dev/null
done

# --- the configuration: 20 routed, 30 watched -------------------------------
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
subnet = "$SUBNET"
EOF
for i in $(seq -w 1 "$ROUTED"); do
  mkdir -p "$work/web-$i"
  cat > "$work/web-$i/service.toml" <<EOF
[service]
name = "$INSTANCE-web-$i"
image = "dispenser-test/web:v1"

[proxy]
host = "web-$i.$DOMAIN"
service_port = 80
EOF
  printf '\n[[service]]\npath = "web-%s"\n' "$i" >> "$work/dispenser.toml"
done
for i in $(seq -w 1 "$WATCHED"); do
  mkdir -p "$work/watch-$i"
  cat > "$work/watch-$i/service.toml" <<EOF
[service]
name = "$INSTANCE-watch-$i"
image = "$REGISTRY/$INSTANCE-$(( (10#$i - 1) % IMAGES + 1 )):latest"

[dispenser]
watch = true
EOF
  printf '\n[[service]]\npath = "watch-%s"\n' "$i" >> "$work/dispenser.toml"
done
"$DISPENSER" -c "$work/dispenser.toml" --test >/dev/null || fail "the generated configuration does not load"

# --- helpers ------------------------------------------------------------------
"$work/notify-listen" "$work/notify.sock" >"$work/notify.log" &
pids+=("$!")
for _ in $(seq 50); do [[ -S "$work/notify.sock" ]] && break; sleep 0.1; done

now() { date +%s.%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
readies() { grep -c 'READY=1' "$work/notify.log" || true; }
# wait_ready N: waits for the Nth READY=1 and prints when it arrived.
wait_ready() {
  local deadline=$((SECONDS + 300))
  until (($(readies) >= $1)); do
    ((SECONDS < deadline)) || fail "no READY=1 number $1 within 300 s"
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
    sleep 0.02
  done
  grep 'READY=1' "$work/notify.log" | sed -n "${1}p" | awk '{print $1}'
}
start_daemon() {
  NOTIFY_SOCKET="$work/notify.sock" "$DISPENSER" -c "$work/dispenser.toml" -p "$work/dispenser.pid" \
    >>"$work/dispenser.log" 2>&1 &
  daemon_pid=$!
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || fail "the daemon exited with an error"
  daemon_pid=""
}
# name id started-at of each container of the instance, sorted.
identities() {
  docker ps -aq --filter "label=dispenser.instance=$INSTANCE" \
    | xargs -r docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}' | sed 's|^/||' | sort
}
running() {
  docker ps -q --filter "label=dispenser.instance=$INSTANCE" --filter status=running | wc -l
}
answer() { curl -s --max-time 2 -H "Host: $1.$DOMAIN" "http://127.0.0.1:$PROXY_PORT/" || true; }
status_field() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$daemon_pid/status"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start="$(load)"

# --- (a) empty host -------------------------------------------------------------
echo "(a) start on an empty host"
began="$(now)"
start_daemon
ready="$(wait_ready 1)"
cold_ms="$(ms_between "$began" "$ready")"
created="$(running)"
((created == SERVICES)) || fail "$created of $SERVICES containers running after the first start"
[[ "$(answer web-07)" == v1 ]] || fail "web-07 does not answer through the proxy"

# --- (b) restart with everything running and unchanged ------------------------
echo "(b) restart with $SERVICES running and unchanged"
stop_daemon
identities > "$work/before-restart"
began="$(now)"
start_daemon
ready="$(wait_ready 2)"
warm_ms="$(ms_between "$began" "$ready")"
identities > "$work/after-restart"
restarted="$(comm -13 "$work/before-restart" "$work/after-restart" | wc -l)"
((restarted == 0)) || fail "$restarted containers changed on a restart: $(comm -13 "$work/before-restart" "$work/after-restart")"
[[ "$(wc -l < "$work/after-restart")" -eq "$SERVICES" ]] || fail "not $SERVICES containers after the restart"

# --- (c) a reload that changes one service -------------------------------------
echo "(c) reload changing $CHANGED"
printf '\n[env]\nSCALE_BENCH = "reloaded"\n' >> "$work/web-01/service.toml"
before_reload="$(readies)"
began="$(now)"
"$DISPENSER" -c "$work/dispenser.toml" -p "$work/dispenser.pid" -s reload
ready="$(wait_ready $((before_reload + 1)))"
reload_ms="$(ms_between "$began" "$ready")"
identities > "$work/after-reload"
changed="$(comm -13 "$work/after-restart" "$work/after-reload" | awk '{print $1}' | paste -sd' ')"
[[ "$changed" == "$CHANGED" ]] || fail "the reload changed [$changed], expected only $CHANGED"
[[ "$(wc -l < "$work/after-reload")" -eq "$SERVICES" ]] || fail "not $SERVICES containers after the reload"
docker inspect -f '{{.Config.Env}}' "$CHANGED" | grep -q SCALE_BENCH=reloaded || fail "$CHANGED lacks the new env"
[[ "$(answer web-01)" == v1 ]] || fail "web-01 does not answer through the proxy after the reload"
# The replacement's phases as the daemon logs them (start-first rollout).
phase() { grep -F "deploy phases" "$work/dispenser.log" | tail -n1 | grep -o "$1=[0-9]*" | cut -d= -f2; }
phases="start $(phase start_ms), ready $(phase ready_ms), swap $(phase swap_ms), drain $(phase drain_ms) ms"

# --- (d) idle memory and CPU, (e) registry requests per round --------------------
echo "(d, e) idle for $IDLE_SECONDS s"
sleep 3
log_from=$(($(wc -l < "$work/registry.log") + 1))
ticks_before="$(cpu_ticks "$daemon_pid")"
sleep "$IDLE_SECONDS"
ticks_after="$(cpu_ticks "$daemon_pid")"
rss_kib="$(status_field VmRSS)"
hwm_kib="$(status_field VmHWM)"
anon_kib="$(status_field RssAnon)"
threads="$(status_field Threads)"
hz="$(getconf CLK_TCK)"
cpu_percent="$(awk -v t="$((ticks_after - ticks_before))" -v hz="$hz" -v s="$IDLE_SECONDS" \
  'BEGIN { printf "%.2f", t / hz / s * 100 }')"
tail -n "+$log_from" "$work/registry.log" | grep -F '"HEAD /v2/' > "$work/heads" || true
gets="$(tail -n "+$log_from" "$work/registry.log" | grep -cF '"GET /v2/' || true)"
distinct="$(grep -o '/v2/[^ ]*/manifests/[^ ]*' "$work/heads" | sort -u | wc -l)"
# Rounds: HEADs closer than 3 s to the previous one belong to the same round.
per_round="$(awk '{
    split(substr($4, 2), t, ":"); s = t[2] * 3600 + t[3] * 60 + t[4]
    if (NR == 1 || s - last >= 3) n++
    count[n]++; last = s
  } END { for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? " " : ""), count[i] }' "$work/heads")"
[[ -n "$per_round" ]] || fail "no registry poll within $IDLE_SECONDS s (DELAY=$DELAY)"
load_end="$(load)"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { if awk -v v="$1" -v l="$2" 'BEGIN { exit !(v < l) }'; then echo met; else echo "**missed**"; fi; }
rows="| start to READY, empty host ($SERVICES created) | $cold_ms ms | - |
| start to READY, $SERVICES running and unchanged | $warm_ms ms, 0 of $SERVICES restarted (ids, StartedAt) | < 3000 ms: $(verdict "$warm_ms" 3000) |
| reload changing one service, to READY | $reload_ms ms, only \`$CHANGED\` replaced ($phases) | - |
| idle memory, VmRSS (VmHWM) | $(mib "$rss_kib") MiB ($(mib "$hwm_kib") MiB), of which anonymous $(mib "$anon_kib") MiB; $threads threads | < 30 MB (28.6 MiB): $(verdict "$(mib "$rss_kib")" 28.6) |
| idle CPU over $IDLE_SECONDS s | $cpu_percent % of a core ($((ticks_after - ticks_before)) ticks of 1/$hz s) | < 1 %: $(verdict "$cpu_percent" 1) |
| registry requests per round | HEAD per round: $per_round; $gets GET; $distinct distinct images for $WATCHED watched services | one HEAD per image: $( [[ "$per_round" =~ ^($distinct ?)+$ ]] && echo met || echo "**missed**") |"
echo
echo "| measure | value | target |"
echo "| --- | --- | --- |"
echo "$rows"

section="<!-- scale:begin -->
## Scale

Measured $(date -u +%Y-%m-%d) on $(nproc) cores, load average $load_start at the start and
$load_end at the end (other builds shared the machine). One daemon, $SERVICES services:
$ROUTED \`dispenser-test/web:v1\` behind the proxy (127.0.0.1:$PROXY_PORT, one host each), $WATCHED
\`dispenser-test/busybox\` watched with \`delay = $DELAY\` against a local \`docker-registry\`
holding it under $IMAGES repositories. READY is the \`READY=1\` datagram on \`NOTIFY_SOCKET\`,
timed from the spawn of the daemon (or from \`dispenser -s reload\`). The images are on the
host already (nothing is pulled). The reload replaces a routed service start-first; its
phases are the daemon's \`deploy phases\` log line (ready includes the 1 s settle of a
container without healthcheck). Idle CPU is the daemon's utime + stime over $IDLE_SECONDS s
starting 3 s after the reload (\`/proc/PID/stat\`), memory is read from \`/proc/PID/status\` at
its end, and registry requests are counted in the registry's access log over the same window.

Command: \`make bench-scale\` (\`bash bench/scale.sh\`; \`IDLE_SECONDS\`, \`DELAY\`, \`IMAGES\`).

| measure | value | target |
| --- | --- | --- |
$rows
<!-- scale:end -->"

write_section "$OUT" scale "$section"
echo "written to $OUT"
