#!/usr/bin/env bash
# Read-only check of nodeagent on a real GPU host: inspect, check, metrics and capture, next to
# nvidia-smi as the peer. Never binds, resets or reconfigures anything: nodeagent is run without
# any profile, and only commands that read. Results go to $OUT (default ./gpu-host-out).
#
#   bench/gpu-host/readonly-check.sh            # from the repository root, as root
#
# Needs python3 with click, PyYAML, psutil and prometheus-client (nvidia-ml-py for NVML series);
# nodeagent runs from the source tree (PYTHONPATH), nothing is installed.
set -u
OUT=${OUT:-$PWD/gpu-host-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
na() { "$PY" -m nodeagent "$@"; }

{
    echo "== date";  date -u +%Y-%m-%dT%H:%M:%SZ
    echo "== uname"; uname -a
    echo "== python"; "$PY" --version
    echo "== nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=pci.bus_id,name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv 2>&1
    echo "== nvidia-smi -q (excerpt)"; nvidia-smi -q 2>&1 | head -120
    echo "== display-class PCI functions in sysfs"
    for d in /sys/bus/pci/devices/*; do
        case "$(cat "$d/class")" in 0x03*) echo "$d $(cat "$d/vendor"):$(cat "$d/device") class=$(cat "$d/class") driver=$(basename "$(readlink "$d/driver" 2>/dev/null)") numa=$(cat "$d/numa_node" 2>/dev/null) link=$(cat "$d/current_link_speed" 2>/dev/null)/x$(cat "$d/current_link_width" 2>/dev/null)";; esac
    done
} > "$OUT/peer.txt" 2>&1

na inspect > "$OUT/inspect.txt" 2>&1; echo "exit $?" >> "$OUT/inspect.txt"
na inspect -o json > "$OUT/inspect.json" 2>"$OUT/inspect-json.err"
na check > "$OUT/check.txt" 2>&1; echo "exit $?" >> "$OUT/check.txt"
na metrics > "$OUT/metrics.prom" 2>"$OUT/metrics.err"; echo "# nodeagent metrics exit $?" >> "$OUT/metrics.err"
na capture -o "$OUT/capture.tar.gz" > "$OUT/capture.txt" 2>&1
cat "$OUT/inspect-json.err" "$OUT/metrics.err" "$OUT/capture.txt" >> "$OUT/peer.txt" 2>/dev/null
rm -f "$OUT/inspect-json.err" "$OUT/metrics.err" "$OUT/capture.txt"
ls -la "$OUT"
