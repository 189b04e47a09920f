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

# rss_kib PID...: resident memory of the processes together, in KiB.
rss_kib() {
  local total=0 pid kib
  for pid in "$@"; do
    kib="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# cpu_ticks PID...: user + system CPU time of the processes together, in
# clock ticks (`getconf CLK_TCK` per second).
cpu_ticks() {
  local total=0 pid ticks
  for pid in "$@"; do
    ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}

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
