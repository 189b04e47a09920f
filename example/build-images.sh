#!/usr/bin/env bash
# Builds the local images the bundled example runs, without the internet:
# a static busybox copied into an empty root file system and imported with
# `docker import`.
#
#   build-images.sh                  the busybox image of api, db and backup;
#                                    kept when it exists unless FORCE=1
#   build-images.sh web VERSION TAG  a web image whose page (web/page.html)
#                                    shows VERSION, a colour and the build time
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
readonly BUSYBOX=/bin/busybox
readonly BUSYBOX_IMAGE=dispenser-example/busybox:latest
# The applets linked into each image; the services of example/ use only these.
readonly APPLETS=(sh ash httpd sleep echo cat ls date true false test mkdir
  rm touch wget nc env id hostname grep printf)
# One colour per version, in turn, so each push looks different: name, CSS value.
readonly COLOURS=("green #2e7d32" "blue #1565c0" "red #c62828" "purple #6a1b9a"
  "orange #ef6c00" "teal #00838f")
# PID 1 gets no default signal handlers: trap TERM so a stop is immediate.
readonly WEB_CMD='["/bin/sh", "-c", "trap \"exit 0\" TERM; httpd -f -p 80 -h /www & wait"]'

ensure_busybox() {
  if [[ -x "$BUSYBOX" ]]; then
    return
  fi
  echo "installing busybox-static (needed to build the example images)" >&2
  local sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then
    sudo=sudo
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
}

image_exists() {
  docker image inspect "$1" >/dev/null 2>&1
}

# make_root DIR: a minimal root file system with busybox and its applet links.
make_root() {
  local root="$1"
  mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc"
  chmod 1777 "$root/tmp"
  cp "$BUSYBOX" "$root/bin/busybox"
  local applet
  for applet in "${APPLETS[@]}"; do
    ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# import ROOT TAG CMD_JSON: imports the root file system ROOT as TAG.
import() {
  local root="$1" tag="$2" cmd="$3"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      -c 'ENV PATH=/bin' \
      -c "CMD $cmd" \
      -c 'LABEL org.opencontainers.image.title=dispenser-example' \
      - "$tag" >/dev/null
}

build_busybox() {
  if image_exists "$BUSYBOX_IMAGE" && [[ "${FORCE:-0}" != 1 ]]; then
    echo "kept   $BUSYBOX_IMAGE (exists; FORCE=1 rebuilds)"
    return
  fi
  local workdir
  workdir="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap must remove this folder
  trap "rm -rf '$workdir'" RETURN
  make_root "$workdir"
  import "$workdir" "$BUSYBOX_IMAGE" '["/bin/sh"]'
  echo "built  $BUSYBOX_IMAGE"
}

# build_web VERSION TAG: the web image of VERSION, its page in /www.
build_web() {
  local version="$1" tag="$2" workdir
  if ! [[ "$version" =~ ^[1-9][0-9]*$ ]]; then
    echo "build-images.sh: the web version must be a positive number, not \`$version\`" >&2
    exit 2
  fi
  local colour="${COLOURS[$(((version - 1) % ${#COLOURS[@]}))]}"
  local colour_name="${colour% *}" colour_value="${colour#* }"
  local built
  built="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  workdir="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap must remove this folder
  trap "rm -rf '$workdir'" RETURN
  make_root "$workdir"
  sed -e "s|@VERSION@|$version|g" -e "s|@COLOUR@|$colour_value|g" \
    -e "s|@COLOUR_NAME@|$colour_name|g" -e "s|@BUILT@|$built|g" -e "s|@IMAGE@|$tag|g" \
    "$HERE/web/page.html" >"$workdir/www/index.html"
  echo "$version" >"$workdir/www/version.txt"
  import "$workdir" "$tag" "$WEB_CMD"
  echo "built  $tag: version $version, $colour_name, $built"
}

main() {
  ensure_busybox
  case "${1:-}" in
    "") build_busybox ;;
    web)
      if [[ $# -ne 3 ]]; then
        echo "usage: build-images.sh web VERSION TAG" >&2
        exit 2
      fi
      build_web "$2" "$3"
      ;;
    *)
      echo "usage: build-images.sh [web VERSION TAG]" >&2
      exit 2
      ;;
  esac
}

main "$@"
