"""Which of this node's GPUs a profile passes through: one rule for prep, labels and whoever asks.

GPU selection is a profile × inventory question, so it lives below both the profile parser and
its users (prep's planner, the label computer): a :class:`GpuSelector` (``spec.gpu.passthrough[]``)
matches a GPU when every field it sets equals the GPU's; :func:`selected_gpus` is the union of
what a profile's selectors match on this node.

The ids are compared in the form discovery reports them (lower-case hex, no ``0x``); a selector
written any other way (``0x10DE``) is normalised first, so a caller that did not go through the
profile parser gets the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nodeagent.inventory import Gpu, Inventory


class SelectorLike(Protocol):
    """What a GPU selector carries; :class:`GpuSelector` and any look-alike."""

    @property
    def vendor(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...


class SelectsGpus(Protocol):
    """A profile (or anything) with passthrough selectors."""

    @property
    def gpu_passthrough(self) -> Sequence[SelectorLike]: ...


@dataclass(frozen=True)
class GpuSelector:
    """Selects GPUs by PCI vendor/device id and/or address; every field that is set must match."""

    vendor: str | None = None
    device: str | None = None
    address: str | None = None

    def describe(self) -> str:
        return describe_selector(self)

    def matches(self, gpu: Gpu) -> bool:
        return gpu_matches(self, gpu)


def describe_selector(selector: SelectorLike) -> str:
    """``vendor=10de device=2330``: the fields that are set, as a person wrote them."""
    parts = [f"{k}={v}" for k, v in (("vendor", selector.vendor), ("device", selector.device),
                                      ("address", selector.address)) if v]
    return " ".join(parts)


def _pci_id(value: str) -> str:
    return value.lower().removeprefix("0x")


def gpu_matches(selector: SelectorLike, gpu: Gpu) -> bool:
    """Every field the selector sets equals the GPU's (ids and addresses compared case-blind)."""
    return ((selector.vendor is None or _pci_id(selector.vendor) == _pci_id(gpu.vendor_id))
            and (selector.device is None or _pci_id(selector.device) == _pci_id(gpu.device_id))
            and (selector.address is None or selector.address.lower() == gpu.address.lower()))


def _selectors(source: SelectsGpus | SelectorLike | Iterable[SelectorLike]) -> list[SelectorLike]:
    if hasattr(source, "gpu_passthrough"):
        return list(source.gpu_passthrough)
    if hasattr(source, "vendor") and hasattr(source, "address"):
        return [source]  # type: ignore[list-item]
    return list(source)  # type: ignore[arg-type]


def selected_gpus(source: SelectsGpus | SelectorLike | Iterable[SelectorLike], inventory: Inventory) -> list[Gpu]:
    """The GPUs of this node that the profile (or selector, or selectors) picks, by address, once each."""
    chosen: dict[str, Gpu] = {}
    for selector in _selectors(source):
        for gpu in inventory.gpus:
            if gpu_matches(selector, gpu):
                chosen.setdefault(gpu.address, gpu)
    return [chosen[a] for a in sorted(chosen)]


def unmatched_selectors(source: SelectsGpus | SelectorLike | Iterable[SelectorLike],
                        inventory: Inventory) -> list[SelectorLike]:
    """The selectors that pick no GPU on this node (prep says so instead of failing)."""
    return [s for s in _selectors(source) if not any(gpu_matches(s, g) for g in inventory.gpus)]
