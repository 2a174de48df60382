#!/usr/bin/env bash
# Prepare the Docker build context for deploy/docker/Dockerfile from binaries built on this
# host (default: target/release/zai-proxy). Layout of OUT (default target/docker-context):
#   rootfs/usr/local/bin/<binary>   the binaries (stripped of nothing, copied as built)
#   rootfs/tmp/                     empty, mode 1777
#   libs/<abs path>                 every shared library ldd lists + the dynamic loader
#   nolibs/                         empty (LIBS=nolibs: use the base image's libraries)
#   state/                          empty (becomes /var/lib/zai-proxy, owned by 65532)
#
# Usage: deploy/docker/build-context.sh [--out DIR] [BINARY...]
# Example (what the e2e suite and the kind demo do):
#   cargo build --release -p zai-proxy
#   deploy/docker/build-context.sh --out target/docker-context target/release/zai-proxy
#   docker build -f deploy/docker/Dockerfile --build-arg BASE=scratch --build-arg LIBS=libs \
#       --build-arg VERSION=0.1.0 -t zai-proxy:0.1.0 target/docker-context
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$repo/target/docker-context"
binaries=()

while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || { echo "build-context.sh: --out needs a directory" >&2; exit 2; }
      out="$2"
      shift 2
      ;;
    -h|--help)
      sed -n '2,18p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    -*)
      echo "build-context.sh: unknown option $1" >&2
      exit 2
      ;;
    *)
      binaries+=("$1")
      shift
      ;;
  esac
done
[ ${#binaries[@]} -gt 0 ] || binaries=("$repo/target/release/zai-proxy")

for bin in "${binaries[@]}"; do
  [ -x "$bin" ] || { echo "build-context.sh: $bin is not an executable (cargo build --release first)" >&2; exit 1; }
done
command -v ldd >/dev/null || { echo "build-context.sh: ldd not found" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/tmp" "$out/libs" "$out/nolibs" "$out/state"
chmod 1777 "$out/rootfs/tmp"

# Copy one library (following symlinks) to the same absolute path under libs/.
copy_lib() {
  local src="$1"
  [ -e "$src" ] || { echo "build-context.sh: library $src not found" >&2; exit 1; }
  mkdir -p "$out/libs$(dirname "$src")"
  cp -L "$src" "$out/libs$src"
}

for bin in "${binaries[@]}"; do
  cp "$bin" "$out/rootfs/usr/local/bin/$(basename "$bin")"
  # ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
  # "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)" (virtual, skipped).
  if ! deps="$(ldd "$bin" 2>&1)"; then
    case "$deps" in
      *"not a dynamic executable"*|*"statically linked"*) continue ;;
      *) echo "build-context.sh: ldd $bin failed: $deps" >&2; exit 1 ;;
    esac
  fi
  while read -r line; do
    case "$line" in
      *"=> not found"*) echo "build-context.sh: $bin needs a missing library: $line" >&2; exit 1 ;;
      *"=> /"*) lib="${line#*=> }"; copy_lib "${lib%% (*}" ;;
      /*) copy_lib "${line%% (*}" ;;
    esac
  done <<< "$deps"
done

echo "build-context.sh: context ready in $out:"
(cd "$out" && find rootfs libs -type f | sort | sed 's/^/  /')
