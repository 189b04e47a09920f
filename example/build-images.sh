#!/usr/bin/env bash
# Builds the local images the bundled example runs, without the internet:
# a static busybox copied into an empty root file system and imported with
# `docker import`. Idempotent: an image that exists is kept unless FORCE=1.
set -euo pipefail

readonly BUSYBOX=/bin/busybox
readonly WEB_IMAGE=dispenser-example/web:latest
readonly BUSYBOX_IMAGE=dispenser-example/busybox:latest
# The applets linked into each image; the services of example/ use only these.
readonly APPLETS=(sh ash httpd sleep echo cat ls date true false test mkdir
  rm touch wget nc env id hostname grep printf)

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

# build TAG CMD_JSON WORKDIR: imports a fresh root as TAG with the given CMD.
build() {
  local tag="$1" cmd="$2" workdir
  if image_exists "$tag" && [[ "${FORCE:-0}" != 1 ]]; then
    echo "kept   $tag (exists; FORCE=1 rebuilds)"
    return
  fi
  workdir="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap must remove this folder
  trap "rm -rf '$workdir'" RETURN
  make_root "$workdir"
  echo '<!doctype html><title>Dispenser example</title><p>Served by the image: mount ./html to replace this page.</p>' \
    >"$workdir/www/index.html"
  tar -C "$workdir" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      -c 'ENV PATH=/bin' \
      -c "CMD $cmd" \
      -c 'LABEL org.opencontainers.image.title=dispenser-example' \
      - "$tag" >/dev/null
  echo "built  $tag"
}

main() {
  ensure_busybox
  # PID 1 gets no default signal handlers: trap TERM so a stop is immediate.
  build "$WEB_IMAGE" '["/bin/sh", "-c", "trap \"exit 0\" TERM; httpd -f -p 80 -h /www & wait"]'
  build "$BUSYBOX_IMAGE" '["/bin/sh"]'
}

main "$@"
