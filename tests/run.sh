#!/usr/bin/env bash
# The test command: installs everything the tests need (Debian packages and Python extras) on a
# fresh machine, then runs the whole suite. Extra arguments go to pytest (e.g. -m 'not realhost').
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(grep -vE '^\s*(#|$)' tests/system-packages.txt | awk '{print $1}' | sort -u | xargs)
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Services must not start from maintainer scripts: the tests start what they need themselves.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Every peer is installed now: a test that skips for a missing one fails the run (tests/conftest.py).
export NODEAGENT_STRICT_SKIPS=1
exec python3 -m pytest "$@"
