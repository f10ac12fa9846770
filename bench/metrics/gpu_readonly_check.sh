#!/bin/bash
# Read-only check of nodeagent's GPU metrics on a host with NVIDIA GPUs on the nvidia driver.
# Run from the repository root. It only reads: NVML queries, nvidia-smi queries, sysfs attributes.
# Nothing is written outside $OUT (default /tmp/nodeagent-gpu-check) and /tmp/nodeagent-site.
#
# On a machine without internet, put wheels of prometheus-client, nvidia-ml-py, click, PyYAML,
# pytest and pytest-mock in bench/metrics/out/wheels (ignored by git); they are unpacked to
# /tmp/nodeagent-site. Otherwise the installed environment (pip install -e .[test]) is used.
set -u
OUT=${OUT:-/tmp/nodeagent-gpu-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
echo "== host"; uname -r; nproc; python3 --version; nvidia-smi -L
nvidia-smi --query-gpu=driver_version,persistence_mode,pstate --format=csv
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls bench/metrics/out/wheels/*.whl >/dev/null 2>&1; then
  SITE=/tmp/nodeagent-site; rm -rf "$SITE"; mkdir -p "$SITE"
  python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
    "$SITE" bench/metrics/out/wheels/*.whl
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
echo "== NVML against nvidia-smi, and nodeagent's exposition on this host"
python3 -m pytest tests/metrics/test_nvml_realgpu.py -v -p no:cacheprovider -o addopts="-ra" 2>&1 | tail -25
echo "== nodeagent metrics (GPU series)"
python3 -m nodeagent metrics --no-libvirt > "$OUT/metrics.txt"; echo "rc=$?"
grep -E '^nodeagent_(gpu_|collector_up|nvidia|numa_gpus)' "$OUT/metrics.txt" | head -60
echo "== PCIe links of NVIDIA devices, from sysfs and from nvidia-smi"
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor" 2>/dev/null)" = 0x10de ] || continue
  echo "$(basename "$d") class=$(cat "$d/class") driver=$(basename "$(readlink "$d/driver")" 2>/dev/null)" \
       "speed=$(cat "$d/current_link_speed" 2>/dev/null)/$(cat "$d/max_link_speed" 2>/dev/null)" \
       "width=$(cat "$d/current_link_width" 2>/dev/null)/$(cat "$d/max_link_width" 2>/dev/null)" \
       "power=$(cat "$d/power_state" 2>/dev/null)"
done
nvidia-smi --query-gpu=pci.bus_id,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max \
  --format=csv
echo "== NVML call timings"
python3 bench/metrics/nvml_call_timing.py
echo "== in-process scrape timing"
python3 - <<'PY'
import statistics, time
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.metrics import MetricsOptions, build_metrics
host = Host("/"); inventory = discover(host)
metrics = build_metrics(lambda: inventory, host, MetricsOptions(libvirt=False))
metrics.text(); times = []
for _ in range(200):
    started = time.perf_counter(); metrics.text(); times.append(time.perf_counter() - started)
print("scrape p50 %.2f ms p99 %.2f ms" % (statistics.median(times) * 1e3, sorted(times)[197] * 1e3))
print({name: round(s.duration_s * 1e3, 2) for name, s in metrics.supervisor.status.items()})
metrics.close()
PY
