#!/usr/bin/env bash
# Installs the Debian packages lora.c needs (only those missing), then
# configures and builds into build/. Sourced by demo.sh and test.sh.
set -euo pipefail

LC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LC_BUILD="${LC_BUILD:-$LC_ROOT/build}"
LC_PACKAGES=(gcc make cmake pkg-config libopenblas-dev libhdf5-dev hdf5-tools libcjson-dev check libpcre2-dev
             openmpi-bin libopenmpi-dev librsvg2-bin)

lc_install_packages() {
    local missing=()
    for p in "${LC_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "lora.c: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
            return 1
        fi
    fi
    echo "lora.c: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

lc_build() {
    # && rather than set -e, which an `if` around the call turns off.
    cmake -S "$LC_ROOT" -B "$LC_BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null &&
        cmake --build "$LC_BUILD" -j"$(nproc)"
}

# The same build with its log in build/build.log and one line on stderr (the
# log's end when it fails).
lc_build_quiet() {
    mkdir -p "$LC_BUILD"
    local log="$LC_BUILD/build.log"
    if lc_build "$@" >"$log" 2>&1; then
        echo "lora.c: built $LC_BUILD/lora (log: $log)" >&2
    else
        tail -n 30 "$log" >&2
        echo "lora.c: the build failed; the whole log is $log" >&2
        return 1
    fi
}
