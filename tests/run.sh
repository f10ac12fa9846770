#!/usr/bin/env bash
# The test command, for a fresh Debian 12 / Ubuntu 24.04 machine, as root:
#   1. installs the Debian packages in tests/system-packages.txt that are missing (apt-get; waits
#      up to NODEAGENT_APT_LOCK_WAIT seconds, default 300, for another apt/dpkg to finish; services
#      are kept from starting while it runs);
#   2. creates a virtual environment (NODEAGENT_VENV, default .venv in the checkout) with the
#      system's python3 (PEP 668: never pip into the system Python) and installs nodeagent into
#      it, editable, with its test extras (from PyPI; libvirt-python is compiled);
#   3. runs pytest from that environment. Extra arguments go to pytest (e.g. -m 'not realhost').
# First run: ~6 min of installing (measured on a fresh clone, 2 busy cores), then the suite (~19 min
# there); later runs only the suite. The first run of the image test also builds its image (~7 min).
# The `realhost` tests change this machine's hugepages and KSM and restore them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${NODEAGENT_VENV:-.venv}
case $VENV in /*) ;; *) VENV="$PWD/$VENV" ;; esac
LOCK_WAIT=${NODEAGENT_APT_LOCK_WAIT:-300}
POLICY_RC=${NODEAGENT_POLICY_RC:-/usr/sbin/policy-rc.d}  # overridable for tests/test_run_sh.py

say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

packages=$(grep -vE '^\s*(#|$)' tests/system-packages.txt | awk '{print $1}' | sort -u | xargs)
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done

# apt-get with a bounded wait for the dpkg lock (unattended-upgrades on a fresh machine holds it).
# `apt-get update` takes the lists lock, which DPkg::Lock::Timeout does not cover: retry it.
apt_get() {
    local deadline=$((SECONDS + LOCK_WAIT)) out
    while true; do
        if out=$(apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT" "$@" 2>&1); then
            return 0
        fi
        if ! grep -q "Could not get lock" <<<"$out" || [ "$SECONDS" -ge "$deadline" ]; then
            printf '%s\n' "$out" >&2
            return 1
        fi
        say "waiting for another package manager to finish ($((deadline - SECONDS)) s left)"
        sleep 2
    done
}

if [ -n "$missing" ]; then
    say "installing Debian packages (a few minutes):$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Services must not start from maintainer scripts: the tests start what they need themselves.
    # Ours only if there was none; removed on any exit, including an interrupted install.
    ours=""
    if [ ! -e "$POLICY_RC" ]; then
        ours=1
        trap 'rm -f "$POLICY_RC"' EXIT
        trap 'exit 130' INT TERM
        printf '#!/bin/sh\n# tests/run.sh: no service starts during the test install\nexit 101\n' > "$POLICY_RC"
        chmod +x "$POLICY_RC"
    fi
    apt_get -qq update
    # shellcheck disable=SC2086
    apt_get install -y -qq --no-install-recommends $missing
    if [ -n "$ours" ]; then
        rm -f "$POLICY_RC"
        trap - EXIT INT TERM
    fi
fi

# The environment is (re)installed when pyproject.toml changed since the last install; nodeagent
# itself is editable, so code changes need nothing.
stamp="$VENV/.nodeagent-test-install"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON -c 'import sys; print(sys.executable)')"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing nodeagent[test] into $VENV (PyPI, a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi

# --- Kubernetes: the real control plane the k8s tests start (etcd, kube-apiserver, kube-scheduler and
# kubectl built from upstream Go modules at one pinned version, once, into ~/.cache/nodeagent-k8s;
# seconds when warm). Built here, not inside a test, so a cold build is not held to pytest's timeout.
say "building the Kubernetes control plane for the tests (once; cold: tens of minutes)"
nice -n 10 tests/k8s/control-plane build
# --- end Kubernetes

# Every peer is installed now: a test that skips for a missing one fails the run (tests/conftest.py).
export NODEAGENT_STRICT_SKIPS=1
export PATH="$VENV/bin:$PATH"
say "running pytest $*"
exec "$VENV/bin/python" -m pytest "$@"
