#!/usr/bin/env bash
# Makes the Debian base image docker/Dockerfile.cpu builds on, in podman's
# (root) storage, where no image registry is reachable:
#
#   scripts/debian_base_image.sh        prints the image's name when done
#
# The name is the one the Dockerfile's FROM resolves to,
# docker.io/library/debian:VERSION-slim (VERSION from its
# `ARG DEBIAN_VERSION`), so a build finds it and pulls nothing. Nothing is
# done when an image of that name exists (`podman rmi` it to make it again).
# Otherwise it is made as Debian's own images are: `debootstrap
# --variant=minbase bookworm` from a Debian mirror, apt's sources in deb822
# form (the host's, so the mirror it reaches), dpkg told to leave out
# documentation, manuals and translations (and those the bootstrap
# installed removed), no package lists or downloaded packages; then
# `podman import`. The root filesystem's tarball is kept in the cache
# directory, so making it again needs no mirror. It is the Debian 12 point
# release the mirror has now, tagged with the Dockerfile's version: the
# images' build and run stages run apt-get update first, as they do on
# Debian's image. Installs podman, runc and debootstrap when missing.
#
# Environment:
#   TENSORCAST_CONTAINER_CACHE  where the tarball is kept (default
#                               ${XDG_CACHE_HOME:-~/.cache}/tensorcast)
#   TENSORCAST_DEBIAN_MIRROR    debootstrap's mirror (default: the host's apt
#                               source if it is Debian 12, else
#                               http://deb.debian.org/debian)
# Messages go to stderr, the name alone to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${TENSORCAST_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tensorcast}

say() { echo "debian_base_image: $*" >&2; }
die() {
  say "$*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (rootful podman, debootstrap)"
missing=()
for p in podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

VERSION=$(sed -n 's/^ARG DEBIAN_VERSION=//p' docker/Dockerfile.cpu)
[ -n "$VERSION" ] || die "no ARG DEBIAN_VERSION in docker/Dockerfile.cpu"
BASE=docker.io/library/debian:$VERSION-slim
case $VERSION in
  12 | 12.*) SUITE=bookworm ;;
  *) die "makes Debian 12 (bookworm) only, not $VERSION" ;;
esac
if podman image exists "$BASE"; then
  say "$BASE exists"
  echo "$BASE"
  exit 0
fi

HOST_SOURCES=/etc/apt/sources.list.d/debian.sources
host_is_suite() {
  [ -f "$HOST_SOURCES" ] && grep -q "^VERSION_CODENAME=$SUITE$" /etc/os-release
}
if [ -n "${TENSORCAST_DEBIAN_MIRROR:-}" ]; then
  MIRROR=$TENSORCAST_DEBIAN_MIRROR
elif host_is_suite; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' "$HOST_SOURCES")
else
  MIRROR=http://deb.debian.org/debian
fi

make_rootfs() {
  local rootfs=$1 log=$2
  say "debootstrap --variant=minbase $SUITE from $MIRROR"
  if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "debootstrap failed"
  fi
  rm -f "$rootfs/etc/apt/sources.list"
  if [ -z "${TENSORCAST_DEBIAN_MIRROR:-}" ] && host_is_suite; then
    cp "$HOST_SOURCES" "$rootfs/etc/apt/sources.list.d/debian.sources"
  else
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# A slim image: no documentation (but each package's copyright), manuals or
# translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/slim" <<'EOF'
// A container image's apt: no translated descriptions, no binary caches,
// downloaded packages deleted once installed.
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/bootstrap.log
  mkdir -p "$rootfs/var/lib/apt/lists/partial"
}

TARBALL=$CACHE/debian-$SUITE-slim-$(dpkg --print-architecture).tar
if [ -s "$TARBALL" ]; then
  say "from the cached $TARBALL"
else
  TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/tensorcast-rootfs.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  make_rootfs "$TMP/rootfs" "$TMP/debootstrap.log"
  mkdir -p "$CACHE"
  tar -C "$TMP/rootfs" --numeric-owner -cf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
fi
podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE (scripts/debian_base_image.sh)" \
  "$TARBALL" "$BASE" >/dev/null
# Which point release it is (the container limits as scripts/test_container.sh
# explains).
made=$(podman --runtime runc run --rm --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" \
  --ulimit nproc=4096:4096 "$BASE" cat /etc/debian_version)
say "$BASE made: Debian $made"
echo "$BASE"
