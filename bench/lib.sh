# Sourced by the benchmark scripts: tool checks, the removal of what a
# benchmark's Dispenser instance left in Docker, readings from /proc, and
# the writing of one section of docs/BENCHMARKS.md.
# shellcheck shell=bash

# require_tools TOOL...: stops with a hint when one of them is missing.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: make deps-bench" >&2; exit 1; }
  done
}

# stop_pids PID...: stops the processes and waits for them.
stop_pids() {
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# remove_instance INSTANCE: removes the containers and networks a Dispenser
# instance created (they carry its `dispenser.instance` label).
remove_instance() {
  docker ps -aq --filter "label=dispenser.instance=$1" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=dispenser.instance=$1" | xargs -r docker network rm >/dev/null
}

# proc_sum FILE PROGRAM PID...: the sum over the processes of the number
# awk PROGRAM prints from /proc/PID/FILE (0 for a process that is gone).
proc_sum() {
  local file="$1" program="$2" total=0 pid value
  shift 2
  for pid in "$@"; do
    value="$(awk "$program" "/proc/$pid/$file" 2>/dev/null || echo 0)"
    total=$((total + ${value:-0}))
  done
  echo "$total"
}

# rss_kib PID...: resident memory of the processes together, in KiB.
# shellcheck disable=SC2016 # an awk program, not shell
rss_kib() { proc_sum status '/^VmRSS/ {print $2}' "$@"; }

# cpu_ticks PID...: user + system CPU time of the processes together, in
# clock ticks (`getconf CLK_TCK` per second).
# shellcheck disable=SC2016 # an awk program, not shell
cpu_ticks() { proc_sum stat '{print $14 + $15}' "$@"; }

# write_section FILE NAME TEXT: TEXT replaces what FILE holds between the
# lines `<!-- NAME:begin -->` and `<!-- NAME:end -->` (markers included), or
# is appended when FILE has no such section. TEXT carries its own markers.
# The rest of FILE is kept as it is.
write_section() {
  local file="$1" name="$2" text="$3" new
  if [[ -f "$file" ]] && grep -qF "<!-- $name:begin -->" "$file"; then
    new="$(mktemp)"
    # Through the environment: awk -v would interpret backslashes.
    SECTION="$text" BEGIN_MARK="<!-- $name:begin -->" END_MARK="<!-- $name:end -->" awk '
      $0 == ENVIRON["BEGIN_MARK"] { print ENVIRON["SECTION"]; skip = 1; next }
      $0 == ENVIRON["END_MARK"] { skip = 0; next }
      !skip { print }
    ' "$file" >"$new"
    cat "$new" >"$file"
    rm -f "$new"
  else
    printf '\n%s\n' "$text" >>"$file"
  fi
}

# median_table RUNS TARGETS LOADS: the Markdown rows of a proxy table from
# RUNS, one run per line (tab-separated: target, load, round, req/s, p50 ms,
# p99 ms, CPU µs/req, RSS MiB, errors; "-" where a value does not apply).
# Per target and load: the median of each column over the rounds, and the
# medians of the ratios to the baseline taken round by round (same round,
# same load). The baseline is nginx, or nginx-close for a `-close` target.
# shellcheck disable=SC2016 # an awk program, not shell
median_table() {
  awk -F '\t' -v targets="$2" -v loads="$3" '
    function median(list,    n, values, i, j, tmp) {
      n = split(list, values, " ")
      if (n == 0) return "-"
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
          tmp = values[j]; values[j] = values[j - 1]; values[j - 1] = tmp
        }
      return (n % 2) ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    function add(key, value) { if (value != "-" && value != "") list[key] = list[key] " " value }
    function ratio(list_key,    m) { m = median(list[list_key]); return (m == "-") ? "-" : sprintf("%.2fx", m) }
    {
      key = $1 SUBSEP $2
      rps[$1, $2, $3] = $4; p99[$1, $2, $3] = $6; cpu[$1, $2, $3] = $7
      add(key SUBSEP "rps", $4); add(key SUBSEP "p50", $5); add(key SUBSEP "p99", $6)
      add(key SUBSEP "cpu", $7); add(key SUBSEP "rss", $8)
      if ($9 != "none") errors[key] = errors[key] $9
      rounds[$3] = 1
    }
    END {
      nt = split(targets, t, " "); nl = split(loads, l, " ")
      for (li = 1; li <= nl; li++) for (ti = 1; ti <= nt; ti++) {
        target = t[ti]; n = l[li]; key = target SUBSEP n
        if (!((key SUBSEP "rps") in list)) continue
        base = (target ~ /-close$/) ? "nginx-close" : "nginx"
        for (r in rounds) if ((target, n, r) in rps && (base, n, r) in rps) {
          if (rps[base, n, r] > 0) add(key SUBSEP "xrps", rps[target, n, r] / rps[base, n, r])
          if (p99[base, n, r] > 0) add(key SUBSEP "xp99", p99[target, n, r] / p99[base, n, r])
          if (cpu[base, n, r] > 0 && cpu[target, n, r] != "-") add(key SUBSEP "xcpu", cpu[target, n, r] / cpu[base, n, r])
        }
        rss = median(list[key SUBSEP "rss"])
        printf "| %s | %s | %d | %.2f | %.2f | %s | %s | %s | %s | %s | %s |\n", target, n,
          median(list[key SUBSEP "rps"]), median(list[key SUBSEP "p50"]), median(list[key SUBSEP "p99"]),
          ratio(key SUBSEP "xrps"), ratio(key SUBSEP "xp99"),
          (list[key SUBSEP "cpu"] == "") ? "-" : sprintf("%.1f", median(list[key SUBSEP "cpu"])),
          ratio(key SUBSEP "xcpu"), (rss == "-") ? "-" : rss " MiB", (key in errors) ? errors[key] : "none"
      }
    }' "$1"
}

# wrk_ms VALUE: wrk's latency (us, ms or s) in milliseconds.
wrk_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else { print v } }'
}

# TABLE_HEAD: the header of median_table's rows.
# shellcheck disable=SC2034 # read by the scripts that source this file
readonly TABLE_HEAD='| path | load | req/s | p50 ms | p99 ms | req/s vs nginx | p99 vs nginx | CPU µs/req | CPU vs nginx | RSS | errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
