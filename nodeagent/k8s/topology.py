"""Inventory → a NodeResourceTopology (``topology.node.k8s.io/v1alpha2``), shaped as NFD writes it.

Pure: builds the object; :mod:`nodeagent.k8s.publisher` decides whether it needs writing.

The shape follows nfd-topology-updater (``pkg/resourcemonitor/noderesourcesaggregator.go``):
cluster-scoped, named after the node, one zone per NUMA node named ``node-N`` of type ``Node``,
``costs`` = the node's row of the NUMA distance table, resources as integer quantities (bytes
for memory and hugepages), the top-level attributes ``topologyManagerPolicy`` and
``topologyManagerScope``, and the deprecated ``topologyPolicies`` computed the same way NFD does.

``available`` is what is free now, from a :class:`~nodeagent.k8s.usage.TopologyUsage`: the
kubelet's podresources allocations when its socket is there (as nfd-topology-updater computes it),
otherwise live host facts (free hugepages and memory per node, GPUs no running VM holds, CPUs no
vCPU is pinned to). Without a usage, ``available`` equals ``allocatable``. Always
``available <= allocatable <= capacity``. When the source names the pods (podresources), the
``nodeTopologyPodsFingerprint`` attribute lets the scheduler-plugins' cache resync.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from nodeagent.inventory import NVIDIA_VENDOR_ID, Gpu, Inventory, NumaNode
from nodeagent.k8s import podfingerprint
from nodeagent.k8s.usage import MEMORY_GRANULE, SOURCE_PODRESOURCES, TopologyUsage, ZoneUsage

API_VERSION = "topology.node.k8s.io/v1alpha2"
KIND = "NodeResourceTopology"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "nodeagent"

# kubevirt-gpu-device-plugin advertises only GPUs bound to these drivers (device_plugin.go).
KUBEVIRT_GPU_VFIO_DRIVERS = frozenset({"vfio-pci", "nvgrace_gpu_vfio_pci"})
NVIDIA_RESOURCE_PREFIX = "nvidia.com/"

# kubelet's defaults when its config file leaves the field out.
DEFAULT_TOPOLOGY_MANAGER_POLICY = "none"
DEFAULT_TOPOLOGY_MANAGER_SCOPE = "container"

_POLICY_LEVELS = {
    "single-numa-node": "SingleNUMANode",
    "restricted": "Restricted",
    "best-effort": "BestEffort",
}

_GO_SPACE = re.compile(r"[\t\n\v\f\r ]+")
_NOT_RESOURCE_CHAR = re.compile(r"[^a-zA-Z0-9_.]+")


def device_plugin_name(pci_ids_name: str | None, device_id: str) -> str:
    """The name kubevirt-gpu-device-plugin derives from a pci.ids device name (``getDeviceName``).

    Upper-cased; ``/`` and ``.`` become ``_``; runs of whitespace become ``_``; anything else that is
    not ``[A-Za-z0-9_]`` is dropped. Without a pci.ids name the plugin uses the hex device id.
    ``"GH100 [H100 SXM5 80GB]"`` → ``"GH100_H100_SXM5_80GB"``.
    """
    if not pci_ids_name:
        return device_id
    name = pci_ids_name.strip().upper().replace("/", "_").replace(".", "_")
    name = _GO_SPACE.sub("_", name)
    return _NOT_RESOURCE_CHAR.sub("", name) or device_id


def gpu_resource_name(gpu: Gpu, extra: Mapping[str, str] | None = None) -> str | None:
    """The extended resource a passthrough-ready GPU is scheduled as, or None when none is known.

    NVIDIA GPUs: kubevirt-gpu-device-plugin's ``nvidia.com/<NAME>``. Other vendors have no
    standard plugin; ``extra`` maps ``"vendor:device"`` (e.g. ``"1002:744c"``) to the resource name
    the cluster's KubeVirt ``permittedHostDevices`` uses.
    """
    if extra and (name := extra.get(f"{gpu.vendor_id}:{gpu.device_id}")):
        return name
    if gpu.vendor_id != NVIDIA_VENDOR_ID:
        return None
    # Discovery falls back to "vendor:device" when pci.ids lacks the device.
    known = gpu.name if gpu.name and gpu.name != f"{gpu.vendor_id}:{gpu.device_id}" else None
    return NVIDIA_RESOURCE_PREFIX + device_plugin_name(known, gpu.device_id)


def topology_policy(policy: str, scope: str) -> str:
    """The deprecated ``topologyPolicies`` value, as NFD's ``DetectTopologyPolicy`` computes it."""
    level = {"pod": "PodLevel", "container": "ContainerLevel"}.get(scope)
    base = _POLICY_LEVELS.get(policy)
    if level is None or base is None:
        return "None"
    return base + level


def _quantity(value: int) -> str:
    return str(max(0, int(value)))


def _resource(name: str, capacity: int, allocatable: int | None = None, available: int | None = None) -> dict[str, str]:
    """One zone resource, with ``0 <= available <= allocatable <= capacity`` enforced."""
    capacity = max(0, int(capacity))
    allocatable = capacity if allocatable is None else min(max(0, int(allocatable)), capacity)
    available = allocatable if available is None else min(max(0, int(available)), allocatable)
    return {"name": name, "capacity": _quantity(capacity), "allocatable": _quantity(allocatable),
            "available": _quantity(available)}


def _zone_name(node_id: int) -> str:
    return f"node-{node_id}"


def _costs(node: NumaNode, node_ids: list[int]) -> list[dict[str, Any]]:
    # The distance row lists every online node in id order (sysfs nodeN/distance).
    ids = node_ids if len(node_ids) == len(node.distances) else list(range(len(node.distances)))
    return [{"name": _zone_name(other), "value": int(distance)}
            for other, distance in zip(ids, node.distances, strict=False)]


def _gpus_per_zone(inv: Inventory, node_ids: list[int], extra: Mapping[str, str] | None,
                   held: frozenset[str] = frozenset()) -> tuple[dict[int, Counter[str]], dict[int, Counter[str]]]:
    """Per zone: the advertised GPU resources, and how many of each a running VM holds."""
    per_zone: dict[int, Counter[str]] = {node_id: Counter() for node_id in node_ids}
    held_per_zone: dict[int, Counter[str]] = {node_id: Counter() for node_id in node_ids}
    for gpu in inv.gpus:
        if not gpu.passthrough_ready:
            continue
        overridden = bool(extra and f"{gpu.vendor_id}:{gpu.device_id}" in extra)
        if not overridden and gpu.driver not in KUBEVIRT_GPU_VFIO_DRIVERS:
            continue  # the device plugin would not advertise it
        name = gpu_resource_name(gpu, extra)
        if name is None:
            continue
        # As the device plugin reports it: an unknown or negative NUMA node counts as node 0.
        zone = gpu.numa_node if gpu.numa_node is not None and gpu.numa_node in per_zone else node_ids[0]
        per_zone[zone][name] += 1
        if gpu.address in held:
            held_per_zone[zone][name] += 1
    return per_zone, held_per_zone


def build_topology(inv: Inventory, node_name: str, *, node_uid: str | None = None,
                   extra_gpu_resources: Mapping[str, str] | None = None,
                   usage: TopologyUsage | None = None) -> dict[str, Any] | None:
    """The NodeResourceTopology object for this node, or None when the node has no NUMA information.

    ``usage``: what running VMs/pods hold (``available`` = ``allocatable`` without it).
    """
    if not inv.numa:
        return None
    numa = sorted(inv.numa, key=lambda n: n.id)
    node_ids = [n.id for n in numa]
    reserved = set(inv.kubelet.reserved_system_cpus or [])
    held = usage.held_gpus if usage is not None else frozenset()
    gpus, held_gpus = _gpus_per_zone(inv, node_ids, extra_gpu_resources, held)
    zones: list[dict[str, Any]] = []
    for node in numa:
        taken = (usage.zones.get(node.id) if usage is not None else None) or ZoneUsage()
        by_podresources = usage is not None and usage.source == SOURCE_PODRESOURCES
        allocatable_cpus = set(node.cpus) - reserved
        if usage is not None and usage.allocatable_cpus is not None:
            allocatable_cpus &= usage.allocatable_cpus
        cpu_available = None
        if usage is not None:
            cpu_available = len(allocatable_cpus - usage.pinned_cpus - taken.cpus)
        resources = [_resource("cpu", len(node.cpus), len(allocatable_cpus), cpu_available)]
        hugepage_bytes = 0
        for size in ("1Gi", "2Mi"):
            pool = node.hugepages.get(size)
            if pool and pool.total:
                page = pool.size_kb * 1024
                size_bytes = pool.total * page
                hugepage_bytes += size_bytes
                name = f"hugepages-{size}"
                free = _available_bytes(size_bytes, taken, name, by_podresources=by_podresources,
                                        free_on_host=None if pool.free is None else pool.free * page,
                                        usage=usage)
                resources.append(_resource(name, size_bytes, size_bytes, free))
        if node.memory_total_bytes is not None:
            # Pages set aside as hugepages are not allocatable as ordinary memory (kubelet's rule).
            allocatable = node.memory_total_bytes - hugepage_bytes
            free_memory = None
            if node.memory_free_bytes is not None:
                free_memory = node.memory_free_bytes // MEMORY_GRANULE * MEMORY_GRANULE
            free = _available_bytes(allocatable, taken, "memory", by_podresources=by_podresources,
                                    free_on_host=free_memory, usage=usage)
            resources.append(_resource("memory", node.memory_total_bytes, allocatable, free))
        # Only the GPU resources nodeagent advertises are listed; other devices the kubelet assigned
        # (SR-IOV VFs, …) have no capacity known here.
        for name, count in sorted(gpus[node.id].items()):
            available = None
            if usage is not None:
                available = count - (taken.devices[name] if by_podresources else held_gpus[node.id][name])
            resources.append(_resource(name, count, count, available))
        zone: dict[str, Any] = {
            "name": _zone_name(node.id),
            "type": "Node",
            "costs": _costs(node, node_ids),
            "resources": sorted(resources, key=lambda r: r["name"]),
        }
        zones.append(zone)

    metadata: dict[str, Any] = {"name": node_name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}
    if node_uid:
        # Owned by its Node: deleting the Node garbage-collects its topology.
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "zones": zones}
    if inv.kubelet.config_present and inv.kubelet.config_readable:
        policy = inv.kubelet.topology_manager_policy or DEFAULT_TOPOLOGY_MANAGER_POLICY
        scope = inv.kubelet.topology_manager_scope or DEFAULT_TOPOLOGY_MANAGER_SCOPE
        body["attributes"] = [{"name": "topologyManagerPolicy", "value": policy},
                              {"name": "topologyManagerScope", "value": scope}]
        body["topologyPolicies"] = [topology_policy(policy, scope)]
    if usage is not None and usage.pods is not None:
        body.setdefault("attributes", []).extend([
            {"name": podfingerprint.ATTRIBUTE, "value": podfingerprint.sign(usage.pods)},
            {"name": podfingerprint.ATTRIBUTE_METHOD, "value": podfingerprint.METHOD_ALL},
        ])
    return body


def _available_bytes(allocatable: int, taken: ZoneUsage, name: str, *, by_podresources: bool,
                     free_on_host: int | None, usage: TopologyUsage | None) -> int | None:
    """Free bytes of memory or a hugepage size: allocatable minus assignments, or what the host has free."""
    if usage is None:
        return None
    if by_podresources:
        return allocatable - taken.memory_bytes.get(name, 0)
    return free_on_host


_COMPARED_FIELDS = ("zones", "attributes", "topologyPolicies")


def topology_content(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a NodeResourceTopology that decide whether it must be rewritten."""
    meta: Mapping[str, Any] = body.get("metadata") or {}
    content: dict[str, Any] = {f: body.get(f) or [] for f in _COMPARED_FIELDS}
    content["labels"] = {MANAGED_BY_LABEL: (meta.get("labels") or {}).get(MANAGED_BY_LABEL)}
    content["ownerReferences"] = [
        {k: ref.get(k) for k in ("apiVersion", "kind", "name", "uid")} for ref in meta.get("ownerReferences") or []
    ]
    return _normalise(content)


def _normalise(value: Any) -> Any:
    """Quantities as strings, so that ``112`` and ``"112"`` compare equal."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


def is_managed(body: Mapping[str, Any]) -> bool:
    """Whether an existing NodeResourceTopology is nodeagent's to rewrite (not nfd-topology-updater's)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)
