"""``spec.gpu.vgpu``: the profile's opt-in to create vGPU instances where KubeVirt does not.

::

    spec:
      gpu:
        vgpu:
          maxPerGpu: 8                       # the ratio cap: vGPU instances on one physical GPU (default 8)
          create:
            - type: GRID A100D-20C           # an id (nvidia-696, 1057), a name, or the name with underscores
              count: 4                       # instances per selected GPU, those that exist included
              gpus: [{vendor: "10de", device: "20b5"}]   # optional: which physical GPUs (default: every
                                                          # GPU of the node that offers the type)

Parsed here with the profile parser's own field checks (it calls :func:`parse_vgpu`); planned by
:mod:`nodeagent.prep.vgpu`. Creating instances is KubeVirt's by default (``mediatedDevicesConfiguration``):
this is for nodes where KubeVirt does not manage the type, never both (docs/vgpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nodeagent.gpuselect import GpuSelector

DEFAULT_MAX_PER_GPU = 8  # the reference design shares a GPU 1:4 to 1:8
MAX_PER_GPU = 64
TYPE_FORM = "a vGPU type: its id (nvidia-696, 1057), its name ('GRID A100D-20C') or the name with underscores"
VGPU_FIELDS = ("create", "maxPerGpu")
CREATE_FIELDS = ("type", "count", "gpus")


@dataclass(frozen=True)
class VgpuCreate:
    type: str
    count: int
    gpus: list[GpuSelector] = field(default_factory=list)  # empty: every GPU offering the type
    index: int = 0  # position in spec.gpu.vgpu.create, for messages

    @property
    def path(self) -> str:
        return f"spec.gpu.vgpu.create[{self.index}]"


@dataclass(frozen=True)
class VgpuSpec:
    create: list[VgpuCreate] = field(default_factory=list)
    max_per_gpu: int = DEFAULT_MAX_PER_GPU


class FieldParser(Protocol):
    """The profile parser's generic checks (nodeagent.profile._Parser)."""

    def error(self, path: str, message: str) -> None: ...
    def mapping(self, value: Any, path: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict | None: ...
    def integer(self, value: Any, path: str, low: int, high: int) -> int | None: ...
    def too_long(self, value: list | dict, path: str) -> bool: ...
    def pci_id(self, value: Any, path: str) -> str | None: ...
    def pci_address(self, value: Any, path: str) -> str | None: ...


def parse_vgpu(parser: FieldParser, value: Any) -> VgpuSpec | None:
    spec = parser.mapping(value, "spec.gpu.vgpu", VGPU_FIELDS)
    if spec is None:
        return None
    cap = DEFAULT_MAX_PER_GPU
    if "maxPerGpu" in spec:
        cap = parser.integer(spec["maxPerGpu"], "spec.gpu.vgpu.maxPerGpu", 1, MAX_PER_GPU) or DEFAULT_MAX_PER_GPU
    raw = spec.get("create", [])
    if not isinstance(raw, list):
        parser.error("spec.gpu.vgpu.create", "expected a list of {type, count, gpus}, got "
                     + ("a mapping" if isinstance(raw, dict) else type(raw).__name__))
        return VgpuSpec([], cap)
    if parser.too_long(raw, "spec.gpu.vgpu.create"):
        return VgpuSpec([], cap)
    entries: list[VgpuCreate] = []
    seen: dict[str, VgpuCreate] = {}
    for i, item in enumerate(raw):
        entry = _create(parser, item, i)
        if entry is None:
            continue
        key = entry.type.replace(" ", "_")
        first = seen.get(key)
        if first is not None and not (first.gpus and entry.gpus):
            # one type on different GPUs is fine (gpus on both); "every GPU" twice is ambiguous
            parser.error(f"spec.gpu.vgpu.create[{i}].type", f"{entry.type!r} is given twice (also "
                         f"create[{first.index}]) and not both with gpus: give one entry per type, or gpus on each")
            continue
        seen.setdefault(key, entry)
        entries.append(entry)
    return VgpuSpec(entries, cap)


def _create(parser: FieldParser, item: Any, i: int) -> VgpuCreate | None:
    path = f"spec.gpu.vgpu.create[{i}]"
    entry = parser.mapping(item, path, CREATE_FIELDS, ("type", "count"))
    if entry is None or "type" not in entry or "count" not in entry:
        return None
    wanted = entry["type"]
    if not isinstance(wanted, str) or not wanted.strip() or len(wanted) > 128 or not wanted.isprintable():
        parser.error(f"{path}.type", f"{wanted!r} is not {TYPE_FORM}"[:300])
        wanted = None
    # A count above maxPerGpu is the plan's refusal (--force overrides it), not a profile error.
    count = parser.integer(entry["count"], f"{path}.count", 1, MAX_PER_GPU)
    gpus = _selectors(parser, entry["gpus"], f"{path}.gpus") if "gpus" in entry else []
    if wanted is None or count is None or gpus is None:
        return None
    return VgpuCreate(wanted.strip(), count, gpus, i)


def _selectors(parser: FieldParser, items: Any, path: str) -> list[GpuSelector] | None:
    if not isinstance(items, list) or not items:
        parser.error(path, "expected a non-empty list of {vendor, device, address} (leave it out for every GPU "
                           "that offers the type)")
        return None
    if parser.too_long(items, path):
        return None
    selectors: list[GpuSelector] = []
    ok = True
    for j, item in enumerate(items):
        where = f"{path}[{j}]"
        entry = parser.mapping(item, where, ("vendor", "device", "address"))
        if not entry:
            if entry == {}:
                parser.error(where, "give at least one of vendor, device, address")
            ok = False
            continue
        if "device" in entry and "vendor" not in entry and "address" not in entry:
            parser.error(f"{where}.vendor", "required with device (device ids are per vendor)")
            ok = False
        vendor = parser.pci_id(entry["vendor"], f"{where}.vendor") if "vendor" in entry else None
        device = parser.pci_id(entry["device"], f"{where}.device") if "device" in entry else None
        address = parser.pci_address(entry["address"], f"{where}.address") if "address" in entry else None
        selectors.append(GpuSelector(vendor, device, address))
    return selectors if ok else None
