"""The big host of bench/inspect, generated at bench time with fixtures/hostgen.py (never committed).

1024 CPUs (8 sockets × 64 cores × 2 threads), 16 NUMA nodes, 16 H100 GPUs with 8 NVSwitches behind
8 PEX890xx switches, 12 dual-port ConnectX-7 NICs with 16 + 15 VFs: ~475 PCI functions, the
size of the largest customers' nodes. Everything else (CPU model, kernel, kubelet) is the
intel-2s-8gpu fixture's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fixtures.hostgen import build_host, load_spec

SOCKETS, CORES, THREADS, NODES_PER_SOCKET = 8, 64, 2, 2
GPU_SWITCHES = 8  # 2 GPUs + 1 NVSwitch each
NICS = 12


def big_host_spec() -> dict[str, Any]:
    _, base = load_spec("intel-2s-8gpu")
    spec = copy.deepcopy(base)
    nodes = SOCKETS * NODES_PER_SOCKET
    spec["hostname"] = "bighost-1024"
    spec["cpu"].update(sockets=SOCKETS, cores_per_socket=CORES, threads_per_core=THREADS)
    spec["numa"] = {"nodes_per_socket": NODES_PER_SOCKET, "distance": {"local": 10, "remote": 21}}
    spec["memory"]["node_kb"] = [263_000_000] * nodes
    spec["memory"]["hugepages"] = {"1G": {"nr": [16] * nodes, "free": [8] * nodes}}
    spec["kernel"]["cmdline"] = spec["kernel"]["cmdline"].replace("hugepages=128", f"hugepages={16 * nodes}")
    spec["kubelet"]["reservedSystemCPUs"] = f"0-1,{SOCKETS * CORES}-{SOCKETS * CORES + 1}"
    devices = [d for d in spec["pci"]["devices"] if d["model"] == "ast2600-vga"]
    numa: dict[str, int] = {"00": 0}
    for i in range(GPU_SWITCHES):
        bus = 0x10 + i * 0x08
        numa[f"{bus:02x}"] = 2 * i
        up, down = f"{bus:02x}:01.0/{bus + 1:02x}:00.0", bus + 2
        for port, (model, driver) in enumerate((("h100-sxm", "vfio-pci" if i < 4 else "nvidia"),
                                                ("h100-sxm", "vfio-pci" if i < 4 else "nvidia"),
                                                ("h100-nvswitch", "nvidia"))):
            devices.append({"path": f"{up}/{down:02x}:{port:02x}.0/{down + 1 + port:02x}:00.0",
                            "model": model, "driver": driver})
    for j in range(NICS):
        bus = 0x90 + j * 0x04
        numa[f"{bus:02x}"] = (2 * j + 1) % nodes
        for port, (num, offset) in enumerate(((16, 2), (15, 18))):
            devices.append({
                "path": f"{bus:02x}:01.0/{bus + 1:02x}:00.{port}", "model": "connectx7", "driver": "mlx5_core",
                "sriov": {"total": 16, "num": num, "offset": offset - port, "stride": 1, "model": "connectx-vf",
                          "driver": "mlx5_core"},
                "net": {"name": f"ens{j}f{port}np{port}", "mac": f"94:6d:ae:8c:{j:02x}:{port:02x}",
                        "speed": 200000, "vf_name": f"ens{j}f{port}v{{n}}"}})
    spec["pci"]["numa"] = numa
    spec["pci"]["devices"] = devices
    return spec


def build_big_host(dest: Path) -> Path:
    """Generate the big host into ``dest`` (a few seconds)."""
    return build_host(big_host_spec(), dest)
