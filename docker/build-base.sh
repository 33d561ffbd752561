#!/usr/bin/env bash
# Build a minimal Debian bookworm base image (python3 3.11 + venv + pip) without any
# container registry: debootstrap a root filesystem from the Debian apt mirror this
# machine already uses, pack it as a tarball cached under /tmp, and `docker import` it.
#
#   docker/build-base.sh                 # -> image kmseg-base:bookworm
#   KMSEG_BASE_TAG=my/base:1 docker/build-base.sh
#   KMSEG_BASE_REBUILD=1 docker/build-base.sh   # ignore the cached tarball
#
# Environment:
#   KMSEG_BASE_TAG        image tag to create                 (kmseg-base:bookworm)
#   KMSEG_BASE_CACHE      cache folder for tarball and .debs  (/tmp/kmseg-base-cache)
#   KMSEG_BASE_MIRROR     Debian mirror URL                   (read from /etc/apt/sources*)
#   KMSEG_BASE_SECURITY   1: apply bookworm-security updates  (1)
#   KMSEG_BASE_REBUILD    1: debootstrap again even if cached  (0)
#   DOCKER                docker client command                (docker)
#
# Needs root (debootstrap chroots), debootstrap, debian-archive-keyring and a running
# docker daemon (DOCKER_HOST is honoured).
set -euo pipefail

SUITE=bookworm
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
TAG="${KMSEG_BASE_TAG:-kmseg-base:bookworm}"
CACHE="${KMSEG_BASE_CACHE:-/tmp/kmseg-base-cache}"
SECURITY="${KMSEG_BASE_SECURITY:-1}"
REBUILD="${KMSEG_BASE_REBUILD:-0}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
DOCKER="${DOCKER:-docker}"
# Bump when the recipe below changes so that old cached tarballs are not reused.
RECIPE_VERSION=1

log() { printf '[build-base %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- the mirror: the first deb822 `URIs:` / one-line `deb` entry serving Debian main --
detect_mirror() {
    local uri=""
    shopt -s nullglob
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/) { print u; exit } u=""; s=""; next }
            /^URIs:/   { u=$2 }
            /^Suites:/ { $1=""; s=$0 " " }
            END        { if (u != "" && s ~ /(^| )bookworm( |$)/) print u }
        ' "$f" | grep -v -- '-security' | head -n1 || true)
        [[ -n "$uri" ]] && break
    done
    if [[ -z "$uri" ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -r "$f" ]] || continue
            uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /^https?:/) { if ($(i+1) == "bookworm") { print $i; exit } break } }' "$f" || true)
            [[ -n "$uri" ]] && break
        done
    fi
    shopt -u nullglob
    echo "${uri:-http://deb.debian.org/debian}"
}

MIRROR="${KMSEG_BASE_MIRROR:-$(detect_mirror)}"
MIRROR="${MIRROR%/}"
# Security archive: same host, debian-security path (deb.debian.org serves both).
SECURITY_MIRROR="${KMSEG_BASE_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap needs chroot)"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
[[ -r "$KEYRING" ]] || die "$KEYRING missing: apt-get install -y debian-archive-keyring"
$DOCKER version >/dev/null 2>&1 || die "docker daemon not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"

key=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$PACKAGES" "$MIRROR" "$SECURITY" | sha256sum | cut -c1-12)
mkdir -p "$CACHE/debs"
TARBALL="$CACHE/rootfs-$SUITE-$key.tar"
t0=$SECONDS

if [[ "$REBUILD" != 1 && -s "$TARBALL" ]]; then
    log "using cached root filesystem $TARBALL"
else
    ROOT=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    cleanup_root() {
        # never leave pseudo filesystems mounted inside the temporary root
        for m in proc sys dev/pts dev; do
            mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
        done
        rm -rf --one-file-system "$ROOT"
    }
    trap cleanup_root EXIT
    log "debootstrap $SUITE from $MIRROR (packages: $PACKAGES)"
    debootstrap --variant=minbase --merged-usr \
        --keyring="$KEYRING" \
        --include="$PACKAGES" \
        --cache-dir="$CACHE/debs" \
        "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 40 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    log "debootstrap done after $((SECONDS - t0))s"

    # apt sources inside the image: the same mirror (+ security) the host uses
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        echo "deb $SECURITY_MIRROR $SUITE-security main"
    } >"$ROOT/etc/apt/sources.list"

    if [[ "$SECURITY" == 1 ]]; then
        log "applying $SUITE-updates / $SUITE-security"
        mount -t proc proc "$ROOT/proc"
        chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
            sh -c 'apt-get -q update && apt-get -q -y -o Dpkg::Options::=--force-confold upgrade' \
            >>"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 40 "$CACHE/debootstrap.log" >&2; die "security upgrade failed"; }
        umount "$ROOT/proc"
    fi

    # slim down: package caches, apt lists, docs, man pages, logs
    chroot "$ROOT" apt-get clean
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
           "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
           "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/* "$ROOT"/root/.cache
    # no services may start inside a container image build
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
    : >"$ROOT/etc/machine-id"
    # sanity check before packing
    chroot "$ROOT" python3 -c 'import sys, venv, ensurepip, ssl; assert sys.version_info[:2] == (3, 11), sys.version' \
        || die "python3 3.11 with venv/ensurepip/ssl not usable in the new root"

    log "packing $TARBALL"
    tar --numeric-owner --xattrs -C "$ROOT" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    cleanup_root
    trap - EXIT
    # drop tarballs of older recipes
    find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$TARBALL")" -delete
fi

# Re-importing the same tarball would make a new image id and void every build cache on
# top of it: skip the import when the tag already holds this very tarball.
tarball_id="$key-$(stat -c '%s-%Y' "$TARBALL")"
current=$($DOCKER image inspect "$TAG" --format '{{ index .Config.Labels "io.kmseg.base.tarball" }}' 2>/dev/null || true)
if [[ "$current" == "$tarball_id" ]]; then
    log "$TAG is already imported from this tarball"
    log "base image $TAG ready in $((SECONDS - t0))s"
    exit 0
fi

log "docker import -> $TAG"
$DOCKER import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + python3 (debootstrap from $MIRROR)\"" \
    --change "LABEL io.kmseg.base.recipe=\"$key\" io.kmseg.base.tarball=\"$tarball_id\"" \
    --message "kmseg base: debootstrap $SUITE $PACKAGES" \
    "$TARBALL" "$TAG" >/dev/null
$DOCKER run --rm --network none "$TAG" python3 --version >&2
log "base image $TAG ready in $((SECONDS - t0))s ($(du -h "$TARBALL" | cut -f1) tarball)"
