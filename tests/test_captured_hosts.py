"""Real hosts packed by ``nodeagent capture`` (fixtures/captures), read back under ``--root``.

* ``h200-firecracker``: the GPU machine lent to this project — a Firecracker guest with one NVIDIA
  H200 passed through to it, on the nvidia driver 580.159.04, captured read-only on 2026-11-26.
  nvidia-smi on the same machine in the same run: bus 00000000:00:06.0, PCIe Gen5 (32 GT/s) x16
  current and max (bench/gpu-host/RESULTS.md).
* ``debian12-dev-vm``: the Debian 12 development VM (kvm_pvm, no IOMMU, no GPU).
"""

from __future__ import annotations

import json
import tarfile

from nodeagent.checks import run_checks
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.workloads import readiness
from tests.support.hosts import CAPTURES


def test_h200_host_is_read_as_nvidia_smi_saw_it(host_trees) -> None:
    inv = discover(Host(str(host_trees("h200-firecracker"))))
    assert len(inv.gpus) == 1
    gpu = inv.gpus[0]
    assert (gpu.address, gpu.vendor_id, gpu.device_id, gpu.driver) == ("0000:00:06.0", "10de", "2335", "nvidia")
    assert gpu.class_code == "0x030200" and not gpu.boot_vga
    assert (gpu.link.current_speed_gts, gpu.link.current_width) == (32.0, 16)
    assert gpu.link.degraded is False
    # The guest has no vIOMMU: no group, so not passthrough-ready, and the check says why.
    assert gpu.iommu_group is None and not gpu.passthrough_ready
    assert "IOMMU is not enabled" in gpu.passthrough_blockers
    assert gpu.numa_node is None  # numa_node -1: the guest's firmware gives no proximity
    # The device has no pci.ids: the name is the ids, as the contract says.
    assert gpu.name == "10de:2335"
    assert inv.cpu.logical_cpus == 16 and inv.kernel.release == "6.18.44-fc-v657-gpu"
    results = {r.id: r for r in run_checks(inv)}
    assert results["gpu-passthrough-0000:00:06.0"].status == "WARN"
    assert not readiness(inv)["ai-training"].ready


def test_capture_manifests_keep_the_live_only_facts() -> None:
    with tarfile.open(CAPTURES / "h200-firecracker.tar.gz") as archive:
        manifest = json.load(archive.extractfile("NODEAGENT-CAPTURE.json"))
    assert manifest["live_only_facts"]["kvm.api_version"] == 12


def test_dev_vm_capture(host_trees) -> None:
    inv = discover(Host(str(host_trees("debian12-dev-vm"))))
    assert inv.kvm.available and inv.kvm.module == "kvm_pvm" and inv.cpu.virtualization is None
    assert not inv.iommu.enabled and inv.gpus == []
    assert inv.nics[0].driver == "virtio_net"
    assert readiness(inv)["general"].ready
