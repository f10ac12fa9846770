"""GPU selection: one rule (profile selector × inventory) for prep and labels."""

from __future__ import annotations

import pytest

from nodeagent.gpuselect import GpuSelector, describe_selector, gpu_matches, selected_gpus, unmatched_selectors
from nodeagent.labels import compute_labels
from nodeagent.profile import NodeProfile
from tests.support.factories import make_gpu, make_inventory

NVIDIA = make_gpu("0000:17:00.0")
NVIDIA_2 = make_gpu("0000:18:00.0")
RADEON = make_gpu("0000:83:00.0", vendor_id="1002", device_id="744c", name="Navi 31")


@pytest.mark.parametrize(("selector", "gpu", "expected"), [
    (GpuSelector(vendor="10de"), NVIDIA, True),
    (GpuSelector(vendor="0x10DE"), NVIDIA, True),  # written as a person might, not as the parser stores it
    (GpuSelector(vendor="10de", device="2330"), NVIDIA, True),
    (GpuSelector(vendor="10de", device="2331"), NVIDIA, False),  # every field set must match
    (GpuSelector(device="744C"), RADEON, True),
    (GpuSelector(address="0000:83:00.0"), RADEON, True),
    (GpuSelector(address="0000:83:00.0"), NVIDIA, False),
    (GpuSelector(vendor="1002", address="0000:17:00.0"), NVIDIA, False),
])
def test_selector_matches(selector: GpuSelector, gpu, expected: bool) -> None:
    assert selector.matches(gpu) is expected
    assert gpu_matches(selector, gpu) is expected


def test_selected_gpus_is_the_union_by_address_once_each() -> None:
    inventory = make_inventory(gpus=[RADEON, NVIDIA_2, NVIDIA])
    profile = NodeProfile(name="p", gpu_passthrough=[GpuSelector(vendor="10de"), GpuSelector(address="0000:17:00.0"),
                                                     GpuSelector(vendor="8086")])
    assert [g.address for g in selected_gpus(profile, inventory)] == ["0000:17:00.0", "0000:18:00.0"]
    assert [g.address for g in selected_gpus(GpuSelector(vendor="1002"), inventory)] == ["0000:83:00.0"]
    assert [describe_selector(s) for s in unmatched_selectors(profile, inventory)] == ["vendor=8086"]


def test_labels_follow_what_prep_selects() -> None:
    """A vendor selector picking no GPU on this node used to set the NVIDIA label anyway (labels had its
    own rule); labels now say what prep binds here, nothing more."""
    inventory = make_inventory(gpus=[NVIDIA])
    nothing_here = NodeProfile(name="p", gpu_passthrough=[GpuSelector(vendor="10de", device="20b5")])
    assert selected_gpus(nothing_here, inventory) == []
    assert "nvidia.com/gpu.workload.config" not in compute_labels(inventory, nothing_here).labels
    this_one = NodeProfile(name="p", gpu_passthrough=[GpuSelector(vendor="10de", device="2330")])
    assert compute_labels(inventory, this_one).labels["nvidia.com/gpu.workload.config"] == "vm-passthrough"
