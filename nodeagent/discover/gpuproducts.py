"""What a GPU is, from its PCI ids: a product name labels can carry, its memory, its NVSwitch generation.

GPU Feature Discovery does not run on nodes whose GPUs are passed through (it needs the host
driver), so nodeagent names those GPUs itself, from what the host shows without a driver:

* **product** — the host's ``pci.ids`` device name, sanitised the way NVIDIA's KubeVirt GPU device
  plugin names its resources (``nvidia.com/GH100_H100_SXM5_80GB``): upper case, ``/`` and ``.``
  and runs of white space to ``_``, everything but letters, digits and ``_`` dropped. The same
  pci.ids therefore gives the same name as the plugin's resource. Without a pci.ids name it is the
  device id, as the plugin falls back to.
* **memory** — from :data:`MEMORY_MIB`, the nominal memory of datacenter SKUs (the marketed
  capacity in MiB: "80GB" = 81920). NVML reports a little less as its total (GFD's
  ``nvidia.com/gpu.memory`` shows 81559 on an H100 80GB): the driver keeps some. An id that
  names several SKUs of different memory (``2336 GH100 [H100]``, ``2342 GH200 120GB / 480GB``) and
  every id not in the table has no memory: absent, never guessed. An entry keyed by subsystem ids
  too (``vendor:device:subvendor:subdevice``) wins over the device's own entry, for boards whose
  device id covers several memory sizes; none of the SKUs below needs one (NVIDIA gives each A100
  and H100 memory size its own device id).
* **NVSwitch generation** — :data:`NVSWITCH_GPUS`: the SXM parts that sit on an HGX baseboard
  with NVSwitches of that generation (see ``nvlink.py`` for what that proves).
"""

from __future__ import annotations

import re

from nodeagent.inventory import NVIDIA_VENDOR_ID

_GIB = 1024  # MiB

#: Nominal memory in MiB by ``vendor:device`` (or ``vendor:device:subvendor:subdevice``). Datacenter
#: SKUs only; the names are pci.ids' (2026.08). Per PCI function: an MI250X's two dies are two
#: functions of 64 GiB each; an A16 board's four GPUs, four functions of 16 GiB.
MEMORY_MIB: dict[str, int] = {
    # NVIDIA Volta
    "10de:1db1": 16 * _GIB,  # GV100GL [Tesla V100 SXM2 16GB]
    "10de:1db3": 16 * _GIB,  # GV100GL [Tesla V100 FHHL 16GB]
    "10de:1db4": 16 * _GIB,  # GV100GL [Tesla V100 PCIe 16GB]
    "10de:1db5": 32 * _GIB,  # GV100GL [Tesla V100 SXM2 32GB]
    "10de:1db6": 32 * _GIB,  # GV100GL [Tesla V100 PCIe 32GB]
    "10de:1db8": 32 * _GIB,  # GV100GL [Tesla V100 SXM3 32GB]
    "10de:1df5": 16 * _GIB,  # GV100GL [Tesla V100 SXM2 16GB]
    "10de:1df6": 32 * _GIB,  # GV100GL [Tesla V100S PCIe 32GB]
    # Turing
    "10de:1eb8": 16 * _GIB,  # TU104GL [Tesla T4]
    # Ampere
    "10de:20b0": 40 * _GIB,  # GA100 [A100 SXM4 40GB]
    "10de:20b1": 40 * _GIB,  # GA100 [A100 PCIe 40GB]
    "10de:20b2": 80 * _GIB,  # GA100 [A100 SXM4 80GB]
    "10de:20b3": 64 * _GIB,  # GA100 [A100-SXM-64GB]
    "10de:20b5": 80 * _GIB,  # GA100 [A100 PCIe 80GB]
    "10de:20b7": 24 * _GIB,  # GA100GL [A30 PCIe]
    "10de:20f1": 40 * _GIB,  # GA100 [A100 PCIe 40GB]
    "10de:20f3": 80 * _GIB,  # GA100 [A800-SXM4-80GB]
    "10de:20f5": 80 * _GIB,  # GA100 [A800 80GB PCIe]
    "10de:20f6": 40 * _GIB,  # GA100 [A800 40GB PCIe]
    "10de:2235": 48 * _GIB,  # GA102GL [A40]
    "10de:2236": 24 * _GIB,  # GA102GL [A10]
    "10de:2237": 24 * _GIB,  # GA102GL [A10G]
    "10de:25b6": 16 * _GIB,  # GA107GL [A2 / A16] (A2: 16 GB; A16: 16 GB per GPU)
    # Ada Lovelace
    "10de:26b5": 48 * _GIB,  # AD102GL [L40]
    "10de:26b9": 48 * _GIB,  # AD102GL [L40S]
    "10de:27b8": 24 * _GIB,  # AD104GL [L4]
    # Hopper
    "10de:2321": 94 * _GIB,  # GH100 [H100L 94GB] (H100 NVL)
    "10de:2322": 80 * _GIB,  # GH100 [H800 PCIe]
    "10de:2324": 80 * _GIB,  # GH100 [H800]
    "10de:2330": 80 * _GIB,  # GH100 [H100 SXM5 80GB]
    "10de:2331": 80 * _GIB,  # GH100 [H100 PCIe]
    "10de:2335": 141 * _GIB,  # GH100 [H200 SXM 141GB]
    "10de:2337": 64 * _GIB,  # GH100 [H100 SXM5 64GB]
    "10de:2338": 96 * _GIB,  # GH100 [H100 SXM5 96GB]
    "10de:2339": 94 * _GIB,  # GH100 [H100 SXM5 94GB]
    "10de:233a": 94 * _GIB,  # GH100 [H800L 94GB]
    "10de:233b": 141 * _GIB,  # GH100 [H200 NVL]
    "10de:233d": 96 * _GIB,  # GH100 [H100 96GB]
    "10de:2348": 144 * _GIB,  # GH100 [GH200 144G HBM3e]
    # AMD Instinct
    "1002:738c": 32 * _GIB,  # Arcturus GL-XL [Instinct MI100]
    "1002:738e": 32 * _GIB,  # Arcturus GL-XL [Instinct MI100]
    "1002:7408": 64 * _GIB,  # Aldebaran/MI200 [Instinct MI250X] (per die)
    "1002:740c": 64 * _GIB,  # Aldebaran/MI200 [Instinct MI250X/MI250] (per die)
    "1002:740f": 64 * _GIB,  # Aldebaran/MI200 [Instinct MI210]
    "1002:74a1": 192 * _GIB,  # Aqua Vanjaram [Instinct MI300X]
    "1002:74a5": 256 * _GIB,  # Aqua Vanjaram [Instinct MI325X]
    # Intel Data Center GPUs
    "8086:0bd5": 128 * _GIB,  # Ponte Vecchio XT (2 Tile) [Data Center GPU Max 1550]
    "8086:0bd6": 128 * _GIB,  # Ponte Vecchio XT (2 Tile) [Data Center GPU Max 1550]
    "8086:0bd9": 48 * _GIB,  # Ponte Vecchio XT (1 Tile) [Data Center GPU Max 1100]
    "8086:0bda": 48 * _GIB,  # Ponte Vecchio XT (1 Tile) [Data Center GPU Max 1100]
    "8086:0bdb": 48 * _GIB,  # Ponte Vecchio XT (1 Tile) [Data Center GPU Max 1100]
    "8086:56c0": 16 * _GIB,  # ATS-M [Data Center GPU Flex 170]
}

#: NVSwitch PCI device id → its generation (pci.ids: ``1af1 GA100 [A100 NVSwitch]``, ``22a3 GH100
#: [H100 NVSwitch]``). First-generation (HGX-2) NVSwitches have no pci.ids entry and are not
#: listed; fourth-generation ones (HGX B200) are not PCI functions of the host at all.
NVSWITCH_GENERATIONS: dict[str, int] = {"1af1": 2, "22a3": 3}

#: GPU ``vendor:device`` → the NVSwitch generation of the HGX baseboard that SKU is built for.
NVSWITCH_GPUS: dict[str, int] = {
    **{f"{NVIDIA_VENDOR_ID}:{d}": 2 for d in ("20b0", "20b2", "20b3", "20f3")},  # A100/A800 SXM4
    **{f"{NVIDIA_VENDOR_ID}:{d}": 3 for d in ("2324", "2330", "2335", "2337", "2338", "2339")},  # H100/H800/H200 SXM
}

_SLASH_DOT = re.compile(r"[/.]")
_SPACE = re.compile(r"\s+")
_OTHER = re.compile(r"[^A-Za-z0-9_]+")
LABEL_VALUE_MAX = 63


def product_name(pci_name: str | None, device_id: str) -> str:
    """The product as KubeVirt's GPU device plugin names its resource (without ``nvidia.com/``).

    ``GH100 [H100 SXM5 80GB]`` → ``GH100_H100_SXM5_80GB``. Trimmed to a valid label value (at
    most 63 characters, letter or digit at both ends); the device id when pci.ids has no name.
    """
    if not pci_name:
        return device_id.lower()
    name = _SLASH_DOT.sub("_", pci_name.strip().upper())
    name = _OTHER.sub("", _SPACE.sub("_", name))
    name = name[:LABEL_VALUE_MAX].strip("_")
    return name or device_id.lower()


def memory_mib(vendor_id: str, device_id: str, subsystem_vendor_id: str | None = None,
               subsystem_device_id: str | None = None, table: dict[str, int] | None = None) -> int | None:
    """The SKU's nominal memory in MiB; None when the ids are not in the table (never guessed)."""
    table = MEMORY_MIB if table is None else table
    key = f"{vendor_id.lower()}:{device_id.lower()}"
    if subsystem_vendor_id and subsystem_device_id:
        specific = table.get(f"{key}:{subsystem_vendor_id.lower()}:{subsystem_device_id.lower()}")
        if specific is not None:
            return specific
    return table.get(key)


def nvswitch_generation(vendor_id: str, device_id: str) -> int | None:
    """The NVSwitch generation of an NVIDIA bridge-class function; None when unknown."""
    if vendor_id.lower() != NVIDIA_VENDOR_ID:
        return None
    return NVSWITCH_GENERATIONS.get(device_id.lower())


def gpu_nvswitch_generation(vendor_id: str, device_id: str) -> int | None:
    """The NVSwitch generation an SXM GPU's baseboard carries; None for PCIe cards and unknown ids."""
    return NVSWITCH_GPUS.get(f"{vendor_id.lower()}:{device_id.lower()}")
