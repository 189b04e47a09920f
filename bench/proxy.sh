#!/usr/bin/env bash
# Proxy benchmark: the same upstream container (tests/upstream), run by
# Dispenser, reached directly through its published port, through nginx
# (upstream keepalive), through Caddy and through Dispenser's proxy. wrk
# drives each over loopback with keep-alive at a few connection counts.
# Prints a Markdown table and writes it, with the command, into
# docs/BENCHMARKS.md. All traffic stays on 127.0.0.1 and the container's
# address on a network this script's Dispenser creates.
#
# Environment: DURATION (seconds per run, default 8), CONNECTIONS (default
# "32 128"), THREADS (wrk threads, default 2), OUT (default docs/BENCHMARKS.md),
# DISPENSER (a binary to measure instead of building target/release/dispenser),
# TARGETS (which rows, default "direct nginx caddy dispenser").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly DURATION="${DURATION:-8}"
readonly CONNECTIONS="${CONNECTIONS:-32 128}"
readonly THREADS="${THREADS:-2}"
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly DISPENSER="${DISPENSER:-}"
readonly TARGETS="${TARGETS:-direct nginx caddy dispenser}"
readonly INSTANCE=bench
readonly HOST=bench.test
readonly DIRECT_PORT=18080
readonly NGINX_PORT=18081
readonly CADDY_PORT=18082
readonly DISPENSER_PORT=18083

# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools wrk nginx caddy docker

work="$(mktemp -d)"
pids=()
cleanup() {
  stop_pids "${pids[@]}"
  remove_instance "$INSTANCE"
  rm -rf "$work"
}
trap cleanup EXIT

bash tests/images/build.sh >/dev/null
if [[ -z "$DISPENSER" ]]; then
  cargo build --release --quiet
fi

# Dispenser runs the upstream and proxies to it.
mkdir -p "$work/upstream"
cat > "$work/dispenser.toml" <<EOF
[proxy]
strategy = "http-only"
http_listen = "127.0.0.1:$DISPENSER_PORT"

[daemon]
instance = "$INSTANCE"
state_dir = "$work/state"

[daemon.network]
name = "$INSTANCE-net"
subnet = "10.251.0.0/24"

[[service]]
path = "upstream"
EOF
cat > "$work/upstream/service.toml" <<EOF
[service]
name = "$INSTANCE-upstream"
image = "dispenser-test/upstream:latest"

[[port]]
host = $DIRECT_PORT
container = 8080

[proxy]
host = "$HOST"
service_port = 8080
EOF
"${DISPENSER:-target/release/dispenser}" -c "$work/dispenser.toml" -p "$work/dispenser.pid" >"$work/dispenser.log" 2>&1 &
dispenser_pid=$!
pids+=("$dispenser_pid")
for _ in $(seq 100); do
  grep -q "dispenser is ready" "$work/dispenser.log" && break
  sleep 0.2
done
upstream_ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$INSTANCE-net\").IPAddress}}" "$INSTANCE-upstream")"

# nginx with keep-alive to the upstream, as PERF-NOTES measured it.
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-auto};
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  upstream app { server $upstream_ip:8080; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
EOF
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

cat > "$work/Caddyfile" <<EOF
{
  admin off
  auto_https off
}
http://:$CADDY_PORT {
  bind 127.0.0.1
  reverse_proxy $upstream_ip:8080
}
EOF
caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
sleep 1

TICKS_PER_SECOND="$(getconf CLK_TCK)"
readonly TICKS_PER_SECOND

# to_ms VALUE: wrk's latency (us, ms or s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else { print v } }'
}

rows=()
for connections in $CONNECTIONS; do
  for target in $TARGETS; do
    case "$target" in
      direct) port=$DIRECT_PORT; procs=() ;;
      nginx) port=$NGINX_PORT; mapfile -t procs < <(pgrep -f "nginx.*$work" || true)
        mapfile -t -O "${#procs[@]}" procs < <(pgrep -P "${procs[0]:-0}" || true) ;;
      caddy) port=$CADDY_PORT; procs=("$caddy_pid") ;;
      dispenser) port=$DISPENSER_PORT; procs=("$dispenser_pid") ;;
    esac
    # A short warm-up fills the pools, then the measured run.
    wrk -t"$THREADS" -c"$connections" -d2s -H "Host: $HOST" "http://127.0.0.1:$port/" >/dev/null
    before="$(cpu_ticks "${procs[@]}")"
    report="$(wrk -t"$THREADS" -c"$connections" -d"${DURATION}s" --latency -H "Host: $HOST" "http://127.0.0.1:$port/")"
    after="$(cpu_ticks "${procs[@]}")"
    requests="$(awk '/requests in/ {print $1}' <<<"$report")"
    rps="$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$report")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$report")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$report")")"
    errors="$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' <<<"$report")"
    if ((${#procs[@]})); then
      rss="$(( $(rss_kib "${procs[@]}") / 1024 )) MiB"
      # CPU time the proxy spent per request: steadier than req/s on a
      # shared machine, since other load slows it without charging it.
      cpu="$(awk -v t="$((after - before))" -v hz="$TICKS_PER_SECOND" -v n="${requests:-0}" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')"
    else
      rss="-"
      cpu="-"
    fi
    rows+=("| $target | $connections | $rps | $p50 | $p99 | $cpu | $rss | ${errors:-none} |")
    echo "${rows[-1]}"
  done
done

section="$(
  echo "<!-- proxy:begin -->"
  echo "## Proxy"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), loopback, keep-alive,"
  echo "the \`dispenser-test/upstream\` container answering \`/\` (3 bytes). RSS is the proxy"
  echo "process after the run (nginx: master and workers); CPU µs/req is the proxy's user and"
  echo "system CPU time during the measured run divided by the requests served. Absolute"
  echo "numbers move from run to run; compare ratios taken in the same run."
  echo
  echo "Command: \`make bench\` (= \`bash bench/proxy.sh\`; each row: \`wrk -t$THREADS -cN -d${DURATION}s --latency -H 'Host: $HOST'\` after a 2 s warm-up)."
  echo
  echo "| path | connections | req/s | p50 ms | p99 ms | CPU µs/req | RSS | errors |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo "<!-- proxy:end -->"
)"
write_section "$OUT" proxy "$section"
echo "written: $OUT"
