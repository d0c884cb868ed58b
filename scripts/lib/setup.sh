# Shared set-up for scripts/*: a project virtualenv and the Debian tools the tests use.
# Sourced, not run. Idempotent: a second call costs a few stat()s.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
# Benchmarks, the demo and the fuzzers import the repository's devsupport helpers.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ensure_venv EXTRAS: create .venv and install the project with the given extras
# ("" for runtime only, "dev" for the test tools); reinstalls when pyproject.toml changes.
ensure_venv() {
    local extras="${1:-}" spec="$ROOT" stamp
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    stamp="$VENV/.tagdns-installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${extras:-runtime}"
    # A virtualenv without pip is what a failed creation leaves (Debian ships venv's
    # ensurepip in python3-venv): start again rather than fail on it every run.
    if [ ! -x "$VENV/bin/python" ] || [ ! -e "$VENV/bin/pip" ]; then
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv || return 1
            "$PYTHON" -m venv "$VENV"
        fi
    fi
    if [ ! -e "$stamp" ]; then
        echo "setting up $VENV (${extras:-runtime})" >&2
        "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet -e "$spec" >&2
        touch "$stamp"
    fi
}

# ensure_debian_tools: install dnsutils, knot-dnsutils, dnsmasq, unbound, dnsperf, iproute2
# when any of their commands is missing. Needs root (or sudo without a password).
ensure_debian_tools() {
    local missing=0 cmd
    for cmd in dig kdig dnsmasq unbound dnsperf ip; do
        command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" = 0 ] && return 0
    apt_install dnsutils knot-dnsutils dnsmasq unbound dnsperf iproute2 || return 1
    export PATH="$PATH:/usr/sbin:/sbin"
}

# apt_install PACKAGE...: install Debian packages as root (or with sudo without a
# password), without starting their services.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "scripts: need root to install $*" >&2
            return 1
        fi
    fi
    echo "installing Debian packages: $*" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    # policy-rc.d keeps the packages' own services from starting on port 53.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy"
        created_policy=1
    fi
    local status=0
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$@" >&2 || status=$?
    [ "$created_policy" = 1 ] && $sudo rm -f "$policy"
    return "$status"
}
