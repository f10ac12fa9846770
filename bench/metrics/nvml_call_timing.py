#!/usr/bin/env python3
"""Time each NVML reading nodeagent makes, on GPU 0 (read-only), and compare v1/v2 memory figures.

Why: a scrape must stay cheap on an 8-GPU host. On an H200 (driver 580) every reading took
microseconds except the energy counter (~3 ms, up to 16 ms), which is why nodeagent refreshes
energy in the background (see nodeagent/sources/nvml_source.py).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pynvml as nvml


def main() -> None:
    started = time.perf_counter()
    nvml.nvmlInit()
    print(f"nvmlInit {(time.perf_counter() - started) * 1e3:.2f} ms")
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    calls: dict[str, Callable[[], Any]] = {
        "pci": lambda: nvml.nvmlDeviceGetPciInfo(handle),
        "utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        "memory v1": lambda: nvml.nvmlDeviceGetMemoryInfo(handle),
        "memory v2": lambda: nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2),
        "temperature": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        "power": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "power limit": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle),
        "energy": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "name": lambda: nvml.nvmlDeviceGetName(handle),
        "uuid": lambda: nvml.nvmlDeviceGetUUID(handle),
        "driver version": nvml.nvmlSystemGetDriverVersion,
    }
    try:
        for name, call in calls.items():
            times = []
            for _ in range(50):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            print(f"{name:15s} p50 {statistics.median(times) * 1e3:7.3f} ms   max {max(times) * 1e3:7.3f} ms")
        v1 = nvml.nvmlDeviceGetMemoryInfo(handle)
        v2 = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        print(f"memory v1: total {v1.total} used {v1.used} free {v1.free}")
        print(f"memory v2: total {v2.total} reserved {v2.reserved} used {v2.used} free {v2.free}")
        smi = subprocess.run(["nvidia-smi", "--query-gpu=memory.total,memory.reserved,memory.used,memory.free",
                              "--format=csv"], capture_output=True, text=True, check=False)
        print(smi.stdout.strip())
    finally:
        nvml.nvmlShutdown()


if __name__ == "__main__":
    main()
