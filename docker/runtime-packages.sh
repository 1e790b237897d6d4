#!/usr/bin/env bash
# The shared libraries of tensorcast's binaries, as distribution packages:
# how the images' run stage gets exactly what the build stage linked, from
# the same distribution, without a hand-kept list of names that differ
# between Debian and Ubuntu (libgrpc++1.51 there, libgrpc++1.51t64 here).
#
#   runtime-packages.sh list BINARY...   (build stage) print the packages
#       that own the libraries the binaries load, one a line; fails when a
#       library belongs to no package
#   runtime-packages.sh install FILE     (run stage) apt-get install FILE's
#       packages that this system lacks (those it has, the C++ runtime or the
#       CUDA runtime of the base image, are kept at their version), then
#       clear apt's lists
set -euo pipefail

die() {
  echo "runtime-packages.sh: $*" >&2
  exit 1
}

# The package that owns a library ldd found, trying its other spellings:
# on a merged-/usr system dpkg records /usr/lib/... or /lib/..., whichever
# the package shipped, and /usr/local/cuda is a link to the versioned tree.
owner() {
  local lib=$1 real candidates path found
  real=$(readlink -f "$lib")
  candidates=("$lib" "$real")
  for path in "$lib" "$real"; do
    case $path in
      /usr/lib/*) candidates+=("${path#/usr}") ;;
      /lib/*) candidates+=("/usr$path") ;;
    esac
  done
  for path in "${candidates[@]}"; do
    if found=$(dpkg-query -S "$path" 2>/dev/null); then
      # "pkg:arch: /path" (or "pkg1, pkg2: /path" for a shared directory,
      # never for a library): the first name, without the architecture.
      found=${found%%: /*}
      found=${found%%,*}
      echo "${found%%:*}"
      return 0
    fi
  done
  return 1
}

list() {
  [ $# -gt 0 ] || die "list needs one or more binaries"
  local bin libs lib
  for bin in "$@"; do
    [ -x "$bin" ] || die "$bin is not an executable"
  done
  libs=$(ldd "$@" | awk '/=> not found/ {print "missing: " $1; next}
                          /=> \// {print $3}' | sort -u)
  if grep -q '^missing: ' <<<"$libs"; then
    die "ldd cannot find $(grep '^missing: ' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')"
  fi
  for lib in $libs; do
    owner "$lib" || die "no package owns $lib"
  done | sort -u
}

install_missing() {
  [ $# -eq 1 ] || die "install needs one FILE"
  local pkg missing=()
  while read -r pkg; do
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done <"$1"
  if [ ${#missing[@]} -eq 0 ]; then
    echo "runtime-packages.sh: nothing to install"
    return 0
  fi
  echo "runtime-packages.sh: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  apt-get clean
  rm -rf /var/lib/apt/lists/*
}

case ${1:-} in
  list) shift; list "$@" ;;
  install) shift; install_missing "$@" ;;
  *) die "usage: runtime-packages.sh list BINARY... | install FILE" ;;
esac
