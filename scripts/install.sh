#!/usr/bin/env bash
# Set up SDS on a fresh Debian 12 machine: system packages, then .venv with SDS installed
# in editable mode. Run as root or with sudo available. Safe to run again: it installs
# only what is missing. Usage: bash scripts/install.sh [--test]
#   --test   also install the test dependencies (pytest, hypothesis, ruff, ...)
#   PYTHON=/path/to/python3.11 overrides the interpreter used to create .venv
set -euo pipefail

want_test=0
for arg in "$@"; do
    case "$arg" in
        --test) want_test=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# -- system packages -------------------------------------------------------------------
packages=(python3-venv python3-dev gcc pkg-config libfuse3-dev fuse3 iproute2 iptables
          procps psmisc)
# the filesystem tests run ordinary tools on a mount
[ "$want_test" = 1 ] && packages+=(git tar rsync)
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install.sh: run as root or install sudo" >&2; exit 1; }
    sudo="sudo"
fi
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# -- Python 3.11+ virtualenv -----------------------------------------------------------
python="${PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in python3 python3.11 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
fi
[ -n "$python" ] || { echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }

venv="$repo/.venv"
if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        2>/dev/null; then
    echo "install.sh: $venv is broken or too old; recreating it"
    rm -rf "$venv"
fi
if [ ! -e "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

# -- SDS itself (editable: later source changes need no reinstall) ----------------------
extras=""
[ "$want_test" = 1 ] && extras="[test]"
stamp="$venv/.sds-installed"
fingerprint="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
check='import sds, uvloop, lmdb, grpc, aiohttp, google.protobuf, pyfuse3'
[ "$want_test" = 1 ] && check="$check, pytest, hypothesis, importlinter"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] &&
   "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "install.sh: .venv is up to date"
else
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"
    echo "$fingerprint" > "$stamp"
    echo "install.sh: installed sds$extras into .venv"
fi
