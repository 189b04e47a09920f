#!/bin/sh
# Builds the local test images from busybox-static, without internet:
#   dispenser-test/busybox:latest  sleeps an hour
#   dispenser-test/web:v1          serves "v1" on port 80 with busybox httpd
#   dispenser-test/upstream:latest tests/upstream (static Rust binary, FROM scratch), port 8080
#   dispenser-test/web:v2          serves "v2" (the watcher's tests push it as an update)
#   dispenser-test/broken:latest   cannot start (its command does not exist)
# Idempotent: an image that exists is kept unless FORCE=1.
set -eu

BUSYBOX=/bin/busybox
APPLETS="sh httpd sleep echo cat ls wget nc date env id hostname true false grep"

if [ ! -x "$BUSYBOX" ]; then
    apt-get install -y busybox-static >&2
fi

# build_image TAG PAGE CMD_JSON
build_image() {
    tag=$1
    page=$2
    cmd=$3
    if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
        echo "$tag"
        return
    fi
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
    cp "$BUSYBOX" "$root/bin/busybox"
    for applet in $APPLETS; do
        ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' "$page" > "$root/www/index.html"
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$root/etc/passwd"
    echo 'root:x:0:' > "$root/etc/group"
    echo 'nogroup:x:65534:' >> "$root/etc/group"
    chmod 1777 "$root/tmp"
    tar -C "$root" -c . | docker import \
        -c "CMD $cmd" \
        -c 'ENV PATH=/bin' \
        - "$tag" >/dev/null
    rm -rf "$root"
    trap - EXIT
    echo "$tag"
}

# PID 1 gets no default signal handlers: trap TERM so `docker stop` is quick.
build_image dispenser-test/busybox:latest "busybox" \
    '["/bin/sh","-c","trap \"exit 0\" TERM; sleep 3600 & wait"]'
build_image dispenser-test/web:v1 "v1" \
    '["/bin/sh","-c","trap \"exit 0\" TERM; httpd -f -p 80 -h /www & wait"]'
build_image dispenser-test/web:v2 "v2" \
    '["/bin/sh","-c","trap \"exit 0\" TERM; httpd -f -p 80 -h /www & wait"]'
build_image dispenser-test/broken:latest "broken" '["/bin/does-not-exist"]'

# The proxy tests' upstream: built from tests/upstream as a static binary in
# its own target folder (a `cargo test` running this script holds the lock of
# the main one), then packaged FROM scratch.
# The image carries a hash of the sources it was built from, so a change to
# them rebuilds it.
build_upstream() {
    tag=dispenser-test/upstream:latest
    repo=$(cd "$(dirname "$0")/../.." && pwd)
    source=$(cat "$repo/tests/upstream/Cargo.toml" "$repo"/tests/upstream/src/*.rs | sha256sum | cut -c1-16)
    built=$(docker image inspect -f '{{index .Config.Labels "dispenser-test.source"}}' "$tag" 2>/dev/null || true)
    if [ "${FORCE:-0}" != 1 ] && [ "$built" = "$source" ]; then
        echo "$tag"
        return
    fi
    target="$repo/target/upstream-image"
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target" \
        "${CARGO:-cargo}" build --release --quiet -p dispenser-test-upstream \
        --target x86_64-unknown-linux-gnu --manifest-path "$repo/Cargo.toml" >&2
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    cp "$target/x86_64-unknown-linux-gnu/release/upstream" "$context/upstream"
    cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY upstream /upstream
ENV PORT=8080 VERSION=v1
EXPOSE 8080
ENTRYPOINT ["/upstream"]
DOCKERFILE
    echo "LABEL dispenser-test.source=$source" >> "$context/Dockerfile"
    docker build -q -t "$tag" "$context" >/dev/null
    rm -rf "$context"
    trap - EXIT
    echo "$tag"
}

build_upstream
