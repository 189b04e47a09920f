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
