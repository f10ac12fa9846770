#!/bin/bash
# Read-only check of `nodeagent serve` on a real GPU host: runs the daemon with --read-only and
# --no-publish on the live root for ~20 s, scrapes it like Prometheus, and records what it serves
# (the NVML and sysfs GPU series next to nvidia-smi), its health endpoints, its RSS, and that
# SIGTERM stops it cleanly. It never writes to the host: --read-only, no profiles.
#
# Run from the repository root. Without the Python packages installed, put wheels in
# bench/serve/out/wheels (ignored by git): they are unpacked to /tmp/nodeagent-serve-site.
set -u
OUT=${OUT:-/tmp/nodeagent-serve-gpu}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
echo "== host"; date -u +%FT%TZ; uname -r; nproc; python3 --version; nvidia-smi -L
nvidia-smi --query-gpu=pci.bus_id,name,driver_version,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw --format=csv
export PYTHONPATH="$PWD"
if ! python3 -c 'import click, yaml, prometheus_client, pynvml, pyudev' 2>/dev/null; then
  SITE=/tmp/nodeagent-serve-site; rm -rf "$SITE"; mkdir -p "$SITE"
  TAG=cp$(python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
  python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$SITE" \
    $(ls bench/serve/out/wheels/*-py3-none-any.whl bench/serve/out/wheels/*abi3*.whl \
         bench/serve/out/wheels/pyyaml-*-"$TAG"-*.whl 2>/dev/null)
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
python3 -m nodeagent serve --read-only --no-publish --listen 127.0.0.1:19464 --uevents udev 2>"$OUT/serve.log" &
PID=$!
python3 - "$PID" "$OUT" <<'PY'
import sys, time, urllib.request, urllib.error
pid, out = sys.argv[1], sys.argv[2]
def get(path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:19464" + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)
deadline = time.time() + 30
while time.time() < deadline and get("/readyz")[0] != 200:
    time.sleep(0.2)
print("== /healthz", get("/healthz")); print("== /readyz", get("/readyz"))
times = []
for _ in range(5):
    t = time.perf_counter(); status, body = get("/metrics"); times.append(time.perf_counter() - t)
    time.sleep(2)
open(out + "/metrics.txt", "w").write(body)
print("== /metrics", status, len(body), "bytes; scrape ms:", [round(x * 1000, 1) for x in times])
for line in body.splitlines():
    if line.startswith(("nodeagent_gpu_", "nodeagent_collector_up", "nodeagent_numa_gpus", "nodeagent_ready",
                        "nodeagent_reconciles_total", "nodeagent_prep_state{state=\"none\"}", "process_resident")):
        print(line)
status = open(f"/proc/{pid}/status").read()
print("== RSS", [l for l in status.splitlines() if l.startswith(("VmRSS", "Threads"))])
PY
kill -TERM "$PID"; wait "$PID"; echo "== serve exit code $?"
echo "== serve log (last lines)"; tail -n 8 "$OUT/serve.log"
