#!/usr/bin/env bash
# Proxy benchmark: the same upstream container (tests/upstream), run by
# Dispenser, reached directly through its published port, through nginx
# (upstream keepalive), through Caddy and through Dispenser's proxy. wrk
# drives each over loopback with keep-alive at a few connection counts, in
# ROUNDS rounds that alternate the targets (a shared VM's speed drifts over
# seconds, so a single run can favour whichever went first). Prints each run,
# then a Markdown table of medians, with each proxy's median ratio to nginx
# taken run by run, and writes it, with the command, into docs/BENCHMARKS.md. All traffic stays on 127.0.0.1 and the container's
# address on a network this script's Dispenser creates.
#
# Environment: DURATION (seconds per run, default 8), CONNECTIONS (default
# "32 128"), ROUNDS (default 3), THREADS (wrk threads, default 2),
# NGINX_WORKERS (default auto), PROXY_WORKERS (Dispenser's `[proxy] workers`,
# default unset: its own default), OUT (default docs/BENCHMARKS.md),
# DISPENSER (a binary to measure instead of building target/release/dispenser),
# TARGETS (which rows, default "direct nginx caddy dispenser dispenser-auth
# nginx-close caddy-close dispenser-close"; dispenser-auth is Dispenser's proxy
# on a route with `basic_auth`, a bcrypt line from `htpasswd -B`, every request
# carrying the right credentials; the -close rows proxy to busybox httpd,
# which closes its connection after every answer, so each request opens a new
# container connection, and compare with nginx-close).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly DURATION="${DURATION:-8}"
readonly CONNECTIONS="${CONNECTIONS:-32 128}"
readonly THREADS="${THREADS:-2}"
readonly ROUNDS="${ROUNDS:-3}"
readonly NGINX_WORKERS="${NGINX_WORKERS:-auto}"
readonly PROXY_WORKERS="${PROXY_WORKERS:-}"
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly DISPENSER="${DISPENSER:-}"
readonly TARGETS="${TARGETS:-direct nginx caddy dispenser dispenser-auth nginx-close caddy-close dispenser-close}"
readonly INSTANCE=bench
readonly HOST=bench.test
readonly AUTH_HOST=auth.bench.test
readonly CLOSE_HOST=close.bench.test
readonly AUTH_USER=bench
readonly AUTH_PASSWORD=bench-password
readonly DIRECT_PORT=18080
readonly NGINX_PORT=18081
readonly CADDY_PORT=18082
readonly DISPENSER_PORT=18083

# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools wrk nginx caddy docker htpasswd base64

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
${PROXY_WORKERS:+workers = $PROXY_WORKERS}

[daemon]
instance = "$INSTANCE"
state_dir = "$work/state"

[daemon.network]
name = "$INSTANCE-net"
subnet = "10.251.0.0/24"

[[service]]
path = "upstream"

[[service]]
path = "auth"

[[service]]
path = "close"

[[service]]
path = "close-nginx"

[[service]]
path = "close-caddy"
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
# The same upstream behind a route with basic auth (bcrypt, htpasswd's default cost).
mkdir -p "$work/auth"
auth_line="$(htpasswd -nbB "$AUTH_USER" "$AUTH_PASSWORD")"
auth_header="Authorization: Basic $(printf '%s:%s' "$AUTH_USER" "$AUTH_PASSWORD" | base64 -w0)"
cat > "$work/auth/service.toml" <<EOF
[service]
name = "$INSTANCE-auth"
image = "dispenser-test/upstream:latest"

[proxy]
host = "$AUTH_HOST"
service_port = 8080
basic_auth = ["$auth_line"]
EOF
# An upstream without keep-alive: busybox httpd answers and closes.
mkdir -p "$work/close"
cat > "$work/close/service.toml" <<EOF
[service]
name = "$INSTANCE-close"
image = "dispenser-test/web:v1"

[proxy]
host = "$CLOSE_HOST"
service_port = 80
EOF
# The same for nginx and Caddy, each its own container: a proxy that closes
# the container connection first leaves its TIME_WAIT sockets on the host,
# and new connections to the same address then search longer for a free
# port. Separate addresses keep one proxy's TIME_WAIT from slowing another.
for proxy in nginx caddy; do
  mkdir -p "$work/close-$proxy"
  cat > "$work/close-$proxy/service.toml" <<EOF
[service]
name = "$INSTANCE-close-$proxy"
image = "dispenser-test/web:v1"
EOF
done
"${DISPENSER:-target/release/dispenser}" -c "$work/dispenser.toml" -p "$work/dispenser.pid" >"$work/dispenser.log" 2>&1 &
dispenser_pid=$!
pids+=("$dispenser_pid")
for _ in $(seq 100); do
  grep -q "dispenser is ready" "$work/dispenser.log" && break
  sleep 0.2
done
address_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$INSTANCE-net\").IPAddress}}" "$1"; }
upstream_ip="$(address_of "$INSTANCE-upstream")"
close_nginx_ip="$(address_of "$INSTANCE-close-nginx")"
close_caddy_ip="$(address_of "$INSTANCE-close-caddy")"

# nginx with keep-alive to the upstream, as PERF-NOTES measured it.
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  # The limits Dispenser has: 256 idle container connections per worker, no cap on
  # requests per connection (nginx's default of 1000 closes a busy client's
  # connection every second or two, and with 64 idle upstream connections an HTTP/2
  # load of 320 streams opens a container connection for most requests).
  keepalive_requests 1000000;
  upstream app { server $upstream_ip:8080; keepalive 256; keepalive_requests 1000000; }
  upstream app_close { server $close_nginx_ip:80; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    server_name $CLOSE_HOST;
    location / {
      proxy_pass http://app_close;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_PORT default_server;
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
http://$CLOSE_HOST:$CADDY_PORT {
  bind 127.0.0.1
  reverse_proxy $close_caddy_ip:80
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

# One line per run in $work/runs: target connections round rps p50 p99 cpu
# rss errors (tab-separated; "-" where a value does not apply).
: >"$work/runs"
for round in $(seq "$ROUNDS"); do
  for connections in $CONNECTIONS; do
    for target in $TARGETS; do
      host=$HOST
      extra=()
      case "$target" in
        direct) port=$DIRECT_PORT; procs=() ;;
        nginx) port=$NGINX_PORT; mapfile -t procs < <(pgrep -f "nginx.*$work" || true)
          mapfile -t -O "${#procs[@]}" procs < <(pgrep -P "${procs[0]:-0}" || true) ;;
        caddy) port=$CADDY_PORT; procs=("$caddy_pid") ;;
        dispenser) port=$DISPENSER_PORT; procs=("$dispenser_pid") ;;
        dispenser-auth) port=$DISPENSER_PORT; procs=("$dispenser_pid"); host=$AUTH_HOST
          extra=(-H "$auth_header") ;;
        nginx-close) port=$NGINX_PORT; host=$CLOSE_HOST; mapfile -t procs < <(pgrep -f "nginx.*$work" || true)
          mapfile -t -O "${#procs[@]}" procs < <(pgrep -P "${procs[0]:-0}" || true) ;;
        caddy-close) port=$CADDY_PORT; procs=("$caddy_pid"); host=$CLOSE_HOST ;;
        dispenser-close) port=$DISPENSER_PORT; procs=("$dispenser_pid"); host=$CLOSE_HOST ;;
      esac
      # A short warm-up fills the pools, then the measured run.
      wrk -t"$THREADS" -c"$connections" -d2s -H "Host: $host" "${extra[@]}" "http://127.0.0.1:$port/" >/dev/null
      before="$(cpu_ticks "${procs[@]}")"
      report="$(wrk -t"$THREADS" -c"$connections" -d"${DURATION}s" --latency -H "Host: $host" "${extra[@]}" "http://127.0.0.1:$port/")"
      after="$(cpu_ticks "${procs[@]}")"
      requests="$(awk '/requests in/ {print $1}' <<<"$report")"
      rps="$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$report")"
      p50="$(wrk_ms "$(awk '$1 == "50%" {print $2}' <<<"$report")")"
      p99="$(wrk_ms "$(awk '$1 == "99%" {print $2}' <<<"$report")")"
      errors="$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' <<<"$report")"
      if ((${#procs[@]})); then
        rss="$(( $(rss_kib "${procs[@]}") / 1024 ))"
        # CPU time the proxy spent per request: steadier than req/s on a
        # shared machine, since other load slows it without charging it.
        cpu="$(awk -v t="$((after - before))" -v hz="$TICKS_PER_SECOND" -v n="${requests:-0}" \
          'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')"
      else
        rss="-"
        cpu="-"
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$connections" "$round" \
        "$rps" "$p50" "$p99" "$cpu" "$rss" "${errors:-none}" | tee -a "$work/runs"
    done
  done
done

# The table: per target and connection count, the medians over the rounds
# and the run-by-run ratios to nginx (bench/lib.sh).
table="$(median_table "$work/runs" "$TARGETS" "$CONNECTIONS")"
echo "$table"

section="$(
  echo "<!-- proxy:begin -->"
  echo "## Proxy"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), loopback, keep-alive,"
  echo "the \`dispenser-test/upstream\` container answering \`/\` (3 bytes); nginx with"
  echo "\`worker_processes $NGINX_WORKERS\`, 256 idle container connections per worker and no cap on"
  echo "requests per connection (Dispenser's limits), and Dispenser with its default \`[proxy] workers\`."
  echo "Every value is the median over $ROUNDS rounds that alternate the targets. The"
  echo "\"vs nginx\" columns are the medians of the ratios taken round by round (same round,"
  echo "same connection count), which is what to compare: absolute numbers move from run to"
  echo "run on a shared VM. RSS is the proxy process after the run (nginx: master and"
  echo "workers); CPU µs/req is the proxy's user and system CPU time during the measured run"
  echo "divided by the requests served."
  echo
  echo "Command: \`make bench\` (= \`bash bench/proxy.sh\`; each run: \`wrk -t$THREADS -cN -d${DURATION}s --latency -H 'Host: $HOST'\` after a 2 s warm-up)."
  echo "The \`dispenser-auth\` row is the same upstream behind a route with \`basic_auth\` (a"
  echo "bcrypt line from \`htpasswd -B\`), every request carrying the right \`Authorization\`: the"
  echo "cost of the cached check (bcrypt runs once per worker and minute, not per request)."
  echo "The \`-close\` rows proxy to busybox httpd (\`dispenser-test/web:v1\`), which closes its"
  echo "connection after every answer: each request opens a new container connection. Their"
  echo "ratios are to \`nginx-close\`, the same upstream behind nginx. Each proxy has a container"
  echo "of its own there, so TIME_WAIT sockets one leaves on the host do not slow another's"
  echo "connections."
  echo
  echo "$TABLE_HEAD"
  echo "$table"
  echo "<!-- proxy:end -->"
)"
write_section "$OUT" proxy "$section"
echo "written: $OUT"
