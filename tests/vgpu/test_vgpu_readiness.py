"""The vgpu workload class and the ``vgpu`` requirement kind, on the vGPU fixture hosts and a plain one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.labels import compute_labels
from nodeagent.workloads import WorkloadClassesError, default_table, readiness


@pytest.fixture(scope="module")
def hosts(host_trees: Callable[[str], object]) -> dict[str, Inventory]:
    return {name: discover(Host(str(host_trees(name)))) for name in ("a100-vgpu", "h100-vgpu-sriov", "minimal",
                                                                    "intel-2s-8gpu")}


def test_default_vgpu_class(hosts: dict[str, Inventory]) -> None:
    assert readiness(hosts["a100-vgpu"])["vgpu"].ready  # 4 mdevs
    assert readiness(hosts["h100-vgpu-sriov"])["vgpu"].ready  # 2 VFs with a vGPU type
    assert compute_labels(hosts["a100-vgpu"]).labels["nodeagent.io/ready-vgpu"] == "true"
    intel = readiness(hosts["intel-2s-8gpu"])["vgpu"]
    assert intel.reasons == ["needs 1 vGPU instance, has 0: no GPU here offers vGPU types"]
    minimal = readiness(hosts["minimal"])["vgpu"]
    assert not minimal.ready and "KVM is not available (/dev/kvm is missing)" in minimal.reasons


def test_an_override_asks_for_a_type_and_a_count(hosts: dict[str, Inventory]) -> None:
    table = default_table().overlay({"vgpu": {"requires": {"vgpu": {"instances": 4, "type": "GRID_A100D-20C"}}},
                                     "vdi": {"requires": {"vgpu": {"instances": 2, "type": "GRID T4-4Q"}}},
                                     "h100-shared": {"requires": {"vgpu": {"instances": 2, "type": "1057"}}}},
                                    "classes", source="test")
    a100 = table.readiness(hosts["a100-vgpu"])
    assert a100["vgpu"].reasons == [
        "needs 4 vGPU instances of type GRID_A100D-20C, has 2: 3 vGPU-capable GPUs with room for 6 more of type "
        "GRID_A100D-20C, which KubeVirt's mediatedDevicesConfiguration or a profile's spec.gpu.vgpu creates"]
    assert a100["vdi"].ready
    assert not a100["h100-shared"].ready
    assert table.readiness(hosts["h100-vgpu-sriov"])["h100-shared"].ready
    assert compute_labels(hosts["a100-vgpu"], readiness=a100).labels["nodeagent.io/ready-vdi"] == "true"


@pytest.mark.parametrize(("body", "message"), [
    ({"vgpu": {}}, "classes.x.requires.vgpu: an empty mapping is not a mapping such as {instances: 1}"),
    ({"vgpu": {"instances": 0}}, "classes.x.requires.vgpu.instances: 0 is not a number of vGPU instances"),
    ({"vgpu": {"instances": 1, "typ": "a"}},
     "classes.x.requires.vgpu.typ: unknown field (allowed here: instances, type)"),
    ({"vgpu": {"instances": 1, "type": 5}}, "classes.x.requires.vgpu.type: 5 is not a vGPU type"),
])
def test_bad_vgpu_requirements_name_the_field(body: dict, message: str) -> None:
    with pytest.raises(WorkloadClassesError) as err:
        default_table().overlay({"x": {"requires": body}}, "classes", source="test")
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


def test_a_mediated_device_appearing_wakes_the_daemon() -> None:
    """KubeVirt creating or removing an instance is a uevent of the mdev bus: the labels follow at once."""
    from nodeagent.daemon.uevents import UEvent

    devpath = "/devices/pci0000:16/0000:16:02.0/0000:17:00.6/8d134be2-e7ea-5b1e-8feb-a58f48d8bea5"
    assert UEvent("add", "mdev", devpath).relevant and UEvent("remove", "mdev", devpath).relevant
    assert not UEvent("change", "mdev", devpath).relevant
