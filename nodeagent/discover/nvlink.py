"""Which GPUs share an NVLink fabric, from what the host shows without the GPU driver.

sysfs has no NVLink topology: NVLink is not PCIe, and on an HGX baseboard the PCIe tree (GPUs
spread over both sockets' root complexes, behind the baseboard's PCIe switches) says nothing about
which GPU reaches which over NVLink. What the host does show, whichever driver holds the GPUs:

* the NVSwitches themselves, as NVIDIA bridge-class PCI functions with a known generation
  (``1af1`` A100's, ``22a3`` H100's), and
* each GPU's device id, which tells an SXM part built for an HGX baseboard with NVSwitches of one
  generation (``2330`` H100 SXM5 80GB → generation 3) from a PCIe card.

The rule: every SXM GPU of generation *g* on a host that has NVSwitches of generation *g* is on
one fabric with them. An HGX baseboard has no other way to connect its SXM GPUs (each GPU's NVLinks
all go to the baseboard's NVSwitches), and a host holds one such baseboard, or two joined into one
fabric (HGX-2, HGX A100 16-GPU), so one fabric per generation.

What it cannot see, stated rather than guessed: NVLink bridges between PCIe cards (A100/H100 PCIe,
H100 NVL pairs) and 4-GPU boards that link GPUs directly without NVSwitches — no fabric is reported
for those; a link that is down or a GPU the Fabric Manager excluded (NVML's NVLink state, readable
only while the host driver owns the GPU); and fourth-generation NVSwitches (HGX B200), which are
not PCI functions of the host. Whether Fabric Manager actually runs is not checked either.
"""

from __future__ import annotations

from dataclasses import replace

from nodeagent.discover.gpuproducts import gpu_nvswitch_generation
from nodeagent.discover.pci import is_vfio_driver
from nodeagent.inventory import Gpu, NvlinkFabric, NvSwitch


def fabric_id(generation: int) -> str:
    return f"nvswitch-gen{generation}"


def fabric_mode(switches: list[NvSwitch]) -> str:
    """``host``, ``passthrough`` or ``mixed``: who drives the NVSwitches (see NvlinkFabric)."""
    if all(s.passthrough_ready for s in switches):
        return "passthrough"
    if all(s.driver is not None and not is_vfio_driver(s.driver) for s in switches):
        return "host"
    return "mixed"


def derive_fabrics(gpus: list[Gpu], nvswitches: list[NvSwitch]) -> tuple[list[Gpu], list[NvlinkFabric]]:
    """The GPUs with ``nvlink_fabric`` set, and the fabrics (sorted by generation)."""
    by_generation: dict[int, list[NvSwitch]] = {}
    for switch in nvswitches:
        if switch.generation is not None:
            by_generation.setdefault(switch.generation, []).append(switch)
    members: dict[int, list[Gpu]] = {g: [] for g in by_generation}
    placed: list[Gpu] = []
    for gpu in gpus:
        generation = gpu_nvswitch_generation(gpu.vendor_id, gpu.device_id)
        if generation is not None and generation in members:
            members[generation].append(gpu)
            placed.append(replace(gpu, nvlink_fabric=fabric_id(generation)))
        else:
            placed.append(gpu)
    fabrics = [
        NvlinkFabric(
            id=fabric_id(generation),
            generation=generation,
            nvswitches=sorted(s.address for s in switches),
            gpus=sorted(g.address for g in members[generation]),
            passthrough_gpus=sorted(g.address for g in members[generation] if g.passthrough_ready),
            mode=fabric_mode(switches),
        )
        for generation, switches in sorted(by_generation.items())
        if members[generation]
    ]
    return placed, fabrics
