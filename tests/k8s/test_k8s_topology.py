"""NodeResourceTopology builder: NFD's shape, kubevirt-gpu-device-plugin's names, the CRD's schema (pure)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.inventory import NumaNode
from nodeagent.k8s.topology import (
    build_topology,
    device_plugin_name,
    gpu_resource_name,
    is_managed,
    topology_content,
    topology_policy,
)
from tests.support.factories import gpu_node_inventory, make_gpu, make_inventory, pool

CRD = Path(__file__).resolve().parents[2] / "daemonset" / "crds" / "noderesourcetopologies.yaml"


def resources(zone: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {r["name"]: (r["capacity"], r["allocatable"], r["available"]) for r in zone["resources"]}


def test_zones_costs_and_resources() -> None:
    nrt = build_topology(gpu_node_inventory(), "node-a", node_uid="uid-1")
    assert nrt is not None
    assert nrt["apiVersion"] == "topology.node.k8s.io/v1alpha2" and nrt["kind"] == "NodeResourceTopology"
    assert nrt["metadata"]["name"] == "node-a"
    assert "namespace" not in nrt["metadata"]  # cluster-scoped
    assert nrt["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-1"}]
    assert [(z["name"], z["type"]) for z in nrt["zones"]] == [("node-0", "Node"), ("node-1", "Node")]
    assert nrt["zones"][0]["costs"] == [{"name": "node-0", "value": 10}, {"name": "node-1", "value": 21}]
    assert nrt["zones"][1]["costs"] == [{"name": "node-0", "value": 21}, {"name": "node-1", "value": 10}]
    gib = 2**30
    for zone in nrt["zones"]:
        assert resources(zone) == {
            "cpu": ("8", "7", "7"),  # kubelet reserves CPU 0 (node-0) and CPU 8 (node-1)
            "memory": (str(64 * gib), str(60 * gib), str(60 * gib)),  # minus the 4 x 1Gi pages
            "hugepages-1Gi": (str(4 * gib), str(4 * gib), str(4 * gib)),  # bytes, not pages
            "nvidia.com/GH100_H100_SXM5_80GB": ("1", "1", "1"),  # the vfio one; the nvidia-bound one is not
        }


def test_topology_manager_attributes_and_deprecated_policies() -> None:
    nrt = build_topology(gpu_node_inventory(), "n")
    assert nrt is not None
    assert nrt["attributes"] == [{"name": "topologyManagerPolicy", "value": "restricted"},
                                 {"name": "topologyManagerScope", "value": "container"}]  # kubelet's default scope
    assert nrt["topologyPolicies"] == ["RestrictedContainerLevel"]


def test_no_kubelet_config_no_attributes() -> None:
    nrt = build_topology(make_inventory(), "n")
    assert nrt is not None and "attributes" not in nrt and "topologyPolicies" not in nrt


@pytest.mark.parametrize(("policy", "scope", "expected"), [
    ("single-numa-node", "pod", "SingleNUMANodePodLevel"),
    ("single-numa-node", "container", "SingleNUMANodeContainerLevel"),
    ("restricted", "pod", "RestrictedPodLevel"), ("best-effort", "container", "BestEffortContainerLevel"),
    ("none", "container", "None"), ("restricted", "nonsense", "None"),
])
def test_topology_policy_as_nfd_detects_it(policy: str, scope: str, expected: str) -> None:
    assert topology_policy(policy, scope) == expected


def test_two_mi_pages_in_bytes_and_only_where_configured() -> None:
    inv = make_inventory()
    inv = replace(inv, numa=[replace(inv.numa[0], hugepages={"2Mi": pool("2Mi", 1024), "1Gi": pool("1Gi", 0)})])
    nrt = build_topology(inv, "n")
    assert nrt is not None
    res = resources(nrt["zones"][0])
    assert res["hugepages-2Mi"] == (str(2 * 2**30),) * 3
    assert "hugepages-1Gi" not in res


def test_no_numa_information_no_topology() -> None:
    assert build_topology(make_inventory(numa=[]), "n") is None


def test_gpu_with_unknown_numa_node_counts_on_node_0_like_the_device_plugin() -> None:
    inv = make_inventory(gpus=[make_gpu(numa_node=None)])
    inv = replace(inv, numa=[replace(inv.numa[0], id=0), NumaNode(1, [], 0, 0, [20, 10], {})])
    nrt = build_topology(inv, "n")
    assert nrt is not None
    assert "nvidia.com/GH100_H100_SXM5_80GB" in resources(nrt["zones"][0])


# --- kubevirt-gpu-device-plugin's names (its own test cases, device_plugin_test.go) ----------------------


@pytest.mark.parametrize(("pci_ids_name", "expected"), [
    ("GK104GL [GRID K520]", "GK104GL_GRID_K520"),
    ("gk104gl [grid k520]", "GK104GL_GRID_K520"),
    ("gk104.gl [grid/k./520]", "GK104_GL_GRID_K__520"),
    ("GH100 [H100 PCIe]", "GH100_H100_PCIE"),
    ("GH100 [H100 SXM5 80GB]", "GH100_H100_SXM5_80GB"),
    ("AD102 [GeForce RTX 4090]", "AD102_GEFORCE_RTX_4090"),
    ("  GA100  [A100 SXM4 40GB]  ", "GA100_A100_SXM4_40GB"),
])
def test_device_plugin_name(pci_ids_name: str, expected: str) -> None:
    assert device_plugin_name(pci_ids_name, "2330") == expected


def test_device_id_when_pci_ids_lacks_the_device() -> None:
    # discovery names an unknown device "vendor:device"; the plugin then uses the bare device id
    gpu = make_gpu(device_id="2bff", name="10de:2bff")
    assert gpu_resource_name(gpu) == "nvidia.com/2bff"
    assert device_plugin_name(None, "2bff") == "2bff"


def test_other_vendors_need_an_explicit_resource_name() -> None:
    radeon = make_gpu(vendor_id="1002", device_id="744c", name="Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]")
    assert gpu_resource_name(radeon) is None
    assert gpu_resource_name(radeon, {"1002:744c": "amd.com/RX7900"}) == "amd.com/RX7900"
    inv = make_inventory(gpus=[radeon])
    nrt = build_topology(inv, "n", extra_gpu_resources={"1002:744c": "amd.com/RX7900"})
    assert nrt is not None and "amd.com/RX7900" in resources(nrt["zones"][0])


def test_gpu_on_a_vfio_variant_the_plugin_does_not_serve_is_not_counted() -> None:
    inv = make_inventory(gpus=[make_gpu(driver="some_vendor_vfio_pci")])
    nrt = build_topology(inv, "n")
    assert nrt is not None
    assert not [n for n in resources(nrt["zones"][0]) if n.startswith("nvidia.com/")]


# --- comparison and the CRD ---------------------------------------------------------------------------


def test_content_comparison_ignores_server_fields_and_quantity_spelling() -> None:
    nrt = build_topology(gpu_node_inventory(), "n", node_uid="u")
    assert nrt is not None
    served = yaml.safe_load(yaml.safe_dump(nrt))
    served["metadata"].update(resourceVersion="99", uid="x", creationTimestamp="t")
    served["zones"][0]["resources"][0]["capacity"] = 8  # an integer quantity
    assert topology_content(served) == topology_content(nrt)
    served["zones"][0]["resources"][0]["allocatable"] = "6"
    assert topology_content(served) != topology_content(nrt)
    assert is_managed(nrt) and not is_managed({"metadata": {"labels": {}}})


def test_objects_validate_against_the_shipped_crd_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["scope"] == "Cluster" and crd["spec"]["group"] == "topology.node.k8s.io"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha2" and version["served"] and version["storage"]
    schema = version["schema"]["openAPIV3Schema"]
    for inv in (gpu_node_inventory(), make_inventory()):
        nrt = build_topology(inv, "n", node_uid="u")
        jsonschema.validate(nrt, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"zones": [{"name": "node-0", "type": "Node",
                                        "resources": [{"name": "cpu", "capacity": "8x", "allocatable": "8",
                                                       "available": "8"}]}]}, schema)
