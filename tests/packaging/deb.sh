#!/usr/bin/env bash
# Builds the .deb, inspects it, installs, upgrades, removes and purges it on
# this machine (as root), checking what each step leaves behind.
# Usage: tests/packaging/deb.sh [path/to/package.deb]
# The checks below run `bash -c '...'`: their $ expand in that shell, on purpose.
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        passed=$((passed + 1))
        echo "  ok    $what"
    else
        failed=$((failed + 1))
        echo "  FAIL  $what"
    fi
}

if [[ "$(id -u)" -ne 0 ]]; then
    echo "deb package test needs root (it installs the package); skipped"
    exit 0
fi

deb=${1:-}
if [[ -z "$deb" ]]; then
    # cargo-deb prints the path of the package it wrote.
    deb=$(cargo deb --no-build --quiet | tail -n 1)
fi
echo "package: $deb"

# A leftover install from an interrupted run would skew every check.
dpkg -P dispenser >/dev/null 2>&1 || true

contents=$(dpkg-deb -c "$deb")
info=$(dpkg-deb -I "$deb")
check "contains /usr/bin/dispenser" grep -q '\./usr/bin/dispenser$' <<<"$contents"
check "contains the systemd unit" grep -q 'lib/systemd/system/dispenser.service' <<<"$contents"
check "contains the man page" grep -q 'usr/share/man/man1/dispenser.1' <<<"$contents"
check "contains bash completions" grep -q 'usr/share/bash-completion/completions/dispenser$' <<<"$contents"
check "contains the starter config" grep -q 'opt/dispenser/dispenser.toml' <<<"$contents"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
check "marks the config as a conffile" grep -qx '/opt/dispenser/dispenser.toml' <<<"$conffiles"
check "has maintainer scripts" grep -q 'postinst' <<<"$info"

dpkg -i "$deb" >/dev/null
check "binary runs" /usr/bin/dispenser --version
check "user dispenser exists" getent passwd dispenser
check "user home is /opt/dispenser" bash -c '[[ $(getent passwd dispenser | cut -d: -f6) == /opt/dispenser ]]'
check "user has a login shell (sudo su dispenser works)" bash -c '[[ $(getent passwd dispenser | cut -d: -f7) == /bin/bash ]]'
check "sudo su dispenser runs a command as it" bash -c '[[ $(su dispenser -c "id -un") == dispenser ]]'
check "user's password is locked" bash -c '[[ $(passwd -S dispenser | cut -d" " -f2) == L ]]'
if getent group docker >/dev/null; then
    check "user is in the docker group" bash -c 'id -nG dispenser | tr " " "\n" | grep -qx docker'
fi
check "home is owned by dispenser" bash -c '[[ $(stat -c %U /opt/dispenser) == dispenser ]]'
check "starter config validates" /usr/bin/dispenser --test -c /opt/dispenser/dispenser.toml
if command -v systemd-analyze >/dev/null; then
    check "installed unit verifies" bash -c \
        'out=$(systemd-analyze verify /lib/systemd/system/dispenser.service 2>&1); ! grep -v "^$" <<<"$out" | grep -vq "docker.socket\|docker.service"'
fi

# An upgrade (here: reinstalling) keeps a changed configuration.
echo "# changed by the operator" >>/opt/dispenser/dispenser.toml
dpkg -i "$deb" >/dev/null
check "upgrade keeps the operator's config" grep -q 'changed by the operator' /opt/dispenser/dispenser.toml

dpkg -r dispenser >/dev/null 2>&1
check "remove deletes the binary" test ! -e /usr/bin/dispenser
check "remove keeps /opt/dispenser" test -f /opt/dispenser/dispenser.toml

dpkg -P dispenser >/dev/null 2>&1
check "purge deletes /opt/dispenser" test ! -e /opt/dispenser
check "purge deletes the user" bash -c '! getent passwd dispenser'

echo "deb: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
