#!/usr/bin/env bash
# TLS proxy benchmark: the same upstream container (tests/upstream), run by
# Dispenser, behind nginx, Caddy and Dispenser's proxy, each terminating TLS
# 1.3 with the same ECDSA P-256 certificate for `localhost` (session cache and
# tickets on where the proxy has them). Three loads, in ROUNDS rounds that
# alternate the targets:
#   https-cN      wrk over HTTPS, N keep-alive connections;
#   https-new-cN  wrk with `Connection: close`: a TLS handshake per request;
#   h2-cN-mM      h2load over TLS (ALPN h2), N connections of M streams each.
# Prints each run, then a Markdown table of medians with the ratios to nginx
# taken round by round (bench/lib.sh), written into docs/BENCHMARKS.md. All
# traffic stays on 127.0.0.1 and the container's address on a network this
# script's Dispenser creates.
#
# Environment: DURATION (seconds per run, default 8), CONNECTIONS (default 32),
# STREAMS (h2 streams per connection, default 10), ROUNDS (default 3), THREADS
# (default 2), NGINX_WORKERS (default auto), OUT (default docs/BENCHMARKS.md),
# DISPENSER (a binary to measure instead of building target/release/dispenser),
# TARGETS (default "nginx caddy dispenser"), LOADS (default "https https-new h2").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly DURATION="${DURATION:-8}"
readonly CONNECTIONS="${CONNECTIONS:-32}"
readonly STREAMS="${STREAMS:-10}"
readonly THREADS="${THREADS:-2}"
readonly ROUNDS="${ROUNDS:-3}"
readonly NGINX_WORKERS="${NGINX_WORKERS:-auto}"
readonly OUT="${OUT:-docs/BENCHMARKS.md}"
readonly DISPENSER="${DISPENSER:-}"
readonly TARGETS="${TARGETS:-nginx caddy dispenser}"
readonly LOADS="${LOADS:-https https-new h2}"
readonly INSTANCE=bench-tls
# wrk sends the URL's host as SNI, and `localhost` resolves without /etc/hosts.
readonly HOST=localhost
readonly NGINX_PORT=18091
readonly CADDY_PORT=18092
readonly DISPENSER_HTTP_PORT=18093
readonly DISPENSER_PORT=18094

# shellcheck source=bench/lib.sh
source bench/lib.sh
require_tools wrk h2load nginx caddy docker openssl

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

# One certificate for every proxy: ECDSA P-256, the name `localhost`.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 600 "$work/key.pem"

mkdir -p "$work/upstream"
cat > "$work/dispenser.toml" <<EOF
[proxy]
strategy = "both"
http_listen = "127.0.0.1:$DISPENSER_HTTP_PORT"
https_listen = "127.0.0.1:$DISPENSER_PORT"

[daemon]
instance = "$INSTANCE"
state_dir = "$work/state"

[daemon.network]
name = "$INSTANCE-net"
subnet = "10.252.0.0/24"

[[service]]
path = "upstream"
EOF
cat > "$work/upstream/service.toml" <<EOF
[service]
name = "$INSTANCE-upstream"
image = "dispenser-test/upstream:latest"

[proxy]
host = "$HOST"
service_port = 8080
cert_file = "$work/cert.pem"
key_file = "$work/key.pem"
EOF
"${DISPENSER:-target/release/dispenser}" -c "$work/dispenser.toml" -p "$work/dispenser.pid" >"$work/dispenser.log" 2>&1 &
dispenser_pid=$!
pids+=("$dispenser_pid")
for _ in $(seq 100); do
  grep -q "dispenser is ready" "$work/dispenser.log" && break
  sleep 0.2
done
upstream_ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$INSTANCE-net\").IPAddress}}" "$INSTANCE-upstream")"

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
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:10m;
    ssl_session_tickets on;
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
https://$HOST:$CADDY_PORT {
  bind 127.0.0.1
  tls $work/cert.pem $work/key.pem {
    protocols tls1.3
  }
  reverse_proxy $upstream_ip:8080
}
EOF
caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
sleep 1

TICKS_PER_SECOND="$(getconf CLK_TCK)"
readonly TICKS_PER_SECOND

# h2_percentile LOG P: the P-th percentile, in ms, of the request times in
# h2load's --log-file (microseconds, third column).
h2_percentile() {
  sort -n -k3,3 "$1" | awk -v p="$2" '{ v[NR] = $3 } END {
    if (NR == 0) { print "-"; exit }
    i = int(NR * p / 100); if (i < 1) i = 1; printf "%.2f", v[i] / 1000 }'
}

# measure LOAD URL: one run; prints "requests rps p50 p99 errors" (tab-separated).
measure() {
  local load="$1" url="$2" report
  case "$load" in
    https|https-new)
      local extra=()
      [[ "$load" == https-new ]] && extra=(-H "Connection: close")
      wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "${extra[@]}" "$url" >/dev/null
      report="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${extra[@]}" "$url")"
      printf '%s\t%s\t%s\t%s\t%s\n' \
        "$(awk '/requests in/ {print $1}' <<<"$report")" \
        "$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$report")" \
        "$(wrk_ms "$(awk '$1 == "50%" {print $2}' <<<"$report")")" \
        "$(wrk_ms "$(awk '$1 == "99%" {print $2}' <<<"$report")")" \
        "$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' <<<"$report")"
      ;;
    h2)
      h2load -t"$THREADS" -c"$CONNECTIONS" -m"$STREAMS" -D 2 "$url" >/dev/null
      report="$(h2load -t"$THREADS" -c"$CONNECTIONS" -m"$STREAMS" -D "$DURATION" \
        --log-file="$work/h2.log" "$url")"
      printf '%s\t%s\t%s\t%s\t%s\n' \
        "$(awk '/^requests:/ {print $8}' <<<"$report")" \
        "$(awk '/^finished in/ {printf "%d", $4}' <<<"$report")" \
        "$(h2_percentile "$work/h2.log" 50)" \
        "$(h2_percentile "$work/h2.log" 99)" \
        "$(awk -v in_flight="$((CONNECTIONS * STREAMS))" '
            # With -D, the requests still in flight when time is up count as
            # failed: at most one per stream is the end of the run, not an error.
            /^requests:/ && ($10 > in_flight || $14 > 0) {printf "failed %s errored %s timeout %s; ", $10, $12, $14}
            /^status codes:/ && ($5 + $7 + $9) > 0 {printf "non-2xx %s; ", $5 + $7 + $9}' <<<"$report")"
      rm -f "$work/h2.log"
      ;;
  esac
}

: >"$work/runs"
load_names=()
for load in $LOADS; do
  case "$load" in
    h2) load_names+=("h2-c$CONNECTIONS-m$STREAMS") ;;
    *) load_names+=("$load-c$CONNECTIONS") ;;
  esac
done
for round in $(seq "$ROUNDS"); do
  index=0
  for load in $LOADS; do
    name="${load_names[$index]}"
    index=$((index + 1))
    for target in $TARGETS; do
      case "$target" in
        nginx) port=$NGINX_PORT; mapfile -t procs < <(pgrep -f "nginx.*$work" || true)
          mapfile -t -O "${#procs[@]}" procs < <(pgrep -P "${procs[0]:-0}" || true) ;;
        caddy) port=$CADDY_PORT; procs=("$caddy_pid") ;;
        dispenser) port=$DISPENSER_PORT; procs=("$dispenser_pid") ;;
      esac
      before="$(cpu_ticks "${procs[@]}")"
      IFS=$'\t' read -r requests rps p50 p99 errors < <(measure "$load" "https://$HOST:$port/")
      after="$(cpu_ticks "${procs[@]}")"
      rss="$(( $(rss_kib "${procs[@]}") / 1024 ))"
      # The warm-up's CPU is counted too: it is the same share for every target.
      cpu="$(awk -v t="$((after - before))" -v hz="$TICKS_PER_SECOND" -v n="${requests:-0}" -v d="$DURATION" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / (n * (d + 2) / d); else print "-" }')"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$name" "$round" \
        "${rps:-0}" "${p50:--}" "${p99:--}" "$cpu" "$rss" "${errors:-none}" | tee -a "$work/runs"
    done
  done
done

table="$(median_table "$work/runs" "$TARGETS" "${load_names[*]}")"
echo "$table"

section="$(
  echo "<!-- proxy-tls:begin -->"
  echo "## Proxy over TLS"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), loopback, TLS 1.3 with one"
  echo "ECDSA P-256 certificate for \`localhost\` in every proxy (nginx: session cache and tickets"
  echo "on, \`worker_processes $NGINX_WORKERS\`, Dispenser's limits: 256 idle container connections per"
  echo "worker, no cap on requests per connection), the \`dispenser-test/upstream\` container answering \`/\`."
  echo "Medians over $ROUNDS alternating rounds; the \"vs nginx\" columns are medians of the"
  echo "round-by-round ratios. CPU µs/req counts the 2 s warm-up with its requests estimated at the"
  echo "measured rate."
  echo
  echo "Command: \`make bench\` (= \`bash bench/proxy-tls.sh\` among the others). Loads:"
  echo "\`https-cN\` is \`wrk -t$THREADS -cN -d${DURATION}s --latency https://localhost:PORT/\` (keep-alive);"
  echo "\`https-new-cN\` the same with \`-H 'Connection: close'\`, a full handshake per request;"
  echo "\`h2-cN-mM\` is \`h2load -cN -mM -D $DURATION\` (ALPN h2), its p50/p99 from \`--log-file\`."
  echo
  echo "$TABLE_HEAD"
  echo "$table"
  echo "<!-- proxy-tls:end -->"
)"
write_section "$OUT" proxy-tls "$section"
echo "written: $OUT"
