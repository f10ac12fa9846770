#!/bin/sh
# Install nodeagent's host-side pieces from this checkout (or a wheel built from it), as root:
#
#   systemd/install.sh [--wheel FILE] [--extras LIST] [--python PYTHON]
#   systemd/install.sh --uninstall [--keep-changes]
#
# Installs:
#   /opt/nodeagent/                 a virtual environment with nodeagent (and the extras asked for:
#                                   libvirt, nvml, k8s — libvirt needs libvirt-dev, gcc, pkg-config,
#                                   python3-dev to compile)
#   /usr/bin/nodeagent              a symlink into it (what the units run)
#   /etc/systemd/system/nodeagent.service, nodeagent-prep.service   (not enabled: see docs/install.md)
#   /etc/default/nodeagent          the daemon's arguments (only when absent)
#   /etc/nodeagent/profiles.d/      where the daemon's profiles go (empty)
# and lists them in /opt/nodeagent/installed-files. The bootloader drop-in and the modprobe.d file
# are not installed: `nodeagent apply` writes them when a profile asks, journaled, and `nodeagent
# revert` removes them.
#
# --uninstall removes what the install created. It refuses while nodeagent's journal
# (/var/lib/nodeagent/journal.json) holds changes — run `nodeagent revert --yes` first — unless
# --keep-changes says to leave them on the host. /etc/nodeagent (profiles) and /var/lib/nodeagent
# are kept. DESTDIR=DIR stages everything under DIR (the tests verify the units there); systemctl
# is run only without DESTDIR.
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=/opt/nodeagent
PYTHON=python3
WHEEL=""
EXTRAS=""
MODE=install
KEEP_CHANGES=""
SRC=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { printf 'nodeagent install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --wheel) [ $# -ge 2 ] || usage; WHEEL=$2; shift 2 ;;
        --extras) [ $# -ge 2 ] || usage; EXTRAS=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || usage; PYTHON=$2; shift 2 ;;
        --uninstall) MODE=uninstall; shift ;;
        --keep-changes) KEEP_CHANGES=1; shift ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
done
case $EXTRAS in
    *[!a-z0-9,]*) die "--extras: a comma-separated list of libvirt, nvml, k8s, all; got '$EXTRAS'" ;;
esac

venv=$DESTDIR$PREFIX
manifest=$venv/installed-files
link=$DESTDIR/usr/bin/nodeagent
units_dir=$DESTDIR/etc/systemd/system
defaults=$DESTDIR/etc/default/nodeagent
journal=$DESTDIR/var/lib/nodeagent/journal.json
UNITS="nodeagent.service nodeagent-prep.service"

systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

install_host() {
    [ "$(id -u)" = 0 ] || [ -n "$DESTDIR" ] || die "run as root (it writes /opt, /usr/bin and /etc)"
    if [ -e "$link" ] || [ -L "$link" ]; then
        [ -L "$link" ] && [ "$(readlink "$link")" = "../..$PREFIX/bin/nodeagent" ] \
            || die "$link exists and is not this installer's symlink (a distribution package?): remove it first"
    fi
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        die "$PYTHON cannot create a virtual environment: apt-get install python3-venv (Debian/Ubuntu)"
    fi
    target=$SRC
    [ -z "$WHEEL" ] || target=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
    [ -z "$EXTRAS" ] || target="$target[$EXTRAS]"
    # a reinstall keeps knowing that /etc/default/nodeagent was the installer's
    previous_defaults=$(grep '^/etc/default/nodeagent ' "$manifest" 2>/dev/null || true)
    say "creating $venv with $PYTHON"
    "$PYTHON" -m venv --clear "$venv"
    say "installing $target into it (from PyPI: its dependencies)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$target"

    mkdir -p "$(dirname "$link")" "$units_dir" "$DESTDIR/etc/default" "$DESTDIR/etc/nodeagent/profiles.d"
    ln -sfn "../..$PREFIX/bin/nodeagent" "$link"
    for unit in $UNITS; do
        install -m 0644 "$SRC/systemd/$unit" "$units_dir/$unit"
    done
    : > "$manifest"
    [ -z "$previous_defaults" ] || echo "$previous_defaults" >> "$manifest"
    if [ ! -e "$defaults" ]; then
        cat > "$defaults" <<'EOF'
# Arguments of `nodeagent serve` (nodeagent.service), e.g.
# NODEAGENT_SERVE_ARGS="--profiles /etc/nodeagent/profiles.d --node-label nodeagent.io/pool=database"
NODEAGENT_SERVE_ARGS="--profiles /etc/nodeagent/profiles.d"
EOF
        echo "/etc/default/nodeagent $(sha256sum "$defaults" | cut -d' ' -f1)" >> "$manifest"
    fi
    {
        echo "/usr/bin/nodeagent"
        for unit in $UNITS; do echo "/etc/systemd/system/$unit"; done
        echo "$PREFIX"
    } >> "$manifest"
    if systemd_running; then
        systemctl daemon-reload
    fi
    say "installed $("$venv/bin/nodeagent" --version 2>&1): /usr/bin/nodeagent, $UNITS (not enabled)"
    say "next: docs/install.md (enable the units, write /etc/default/nodeagent)"
}

uninstall_host() {
    [ "$(id -u)" = 0 ] || [ -n "$DESTDIR" ] || die "run as root"
    [ -f "$manifest" ] || die "nothing to uninstall: $manifest is missing (not installed by this script)"
    if [ -e "$journal" ] && [ -z "$KEEP_CHANGES" ]; then
        die "$journal records host changes nodeagent made: run 'nodeagent revert --yes' first (or --keep-changes to leave them)"
    fi
    if systemd_running; then
        # shellcheck disable=SC2086
        systemctl disable --now $UNITS 2>/dev/null || true
    fi
    while read -r path sum; do
        case $path in
            /etc/default/nodeagent)
                # only as the installer wrote it: an edited one is the admin's
                if [ "$(sha256sum "$DESTDIR$path" 2>/dev/null | cut -d' ' -f1)" = "$sum" ]; then
                    rm -f "$DESTDIR$path"
                else
                    say "kept $path (edited since the install)"
                fi ;;
            /usr/bin/nodeagent)
                if [ -L "$DESTDIR$path" ] && [ "$(readlink "$DESTDIR$path")" = "../..$PREFIX/bin/nodeagent" ]; then
                    rm -f "$DESTDIR$path"
                fi ;;
            /etc/systemd/system/*) rm -f "$DESTDIR$path" ;;
            "$PREFIX") ;;  # last, with the manifest in it
            *) say "ignoring unexpected manifest line: $path" ;;
        esac
    done < "$manifest"
    rm -rf "$venv"
    if systemd_running; then
        systemctl daemon-reload
    fi
    say "removed nodeagent; kept /etc/nodeagent (profiles) and /var/lib/nodeagent (state)"
}

case $MODE in
    install) install_host ;;
    uninstall) uninstall_host ;;
esac
