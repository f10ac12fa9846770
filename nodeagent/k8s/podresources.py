"""The kubelet's podresources API (v1, gRPC on a unix socket) → a :class:`TopologyUsage`.

As nfd-topology-updater reads it: ``List`` gives, per pod and container, the exclusive CPUs, the
devices (with their NUMA nodes) and the memory blocks (per memory type and NUMA node) the kubelet
assigned; ``GetAllocatableResources`` gives the CPUs and devices the kubelet may hand out at all,
and the NUMA node of each device. A device is counted in the zone its allocatable entry names
(else the first node of its own topology); a memory block in the first node of its topology.

:func:`gather_usage` is what the publisher calls: the socket when it exists under ``--root``,
live host facts otherwise (or when the socket does not answer; a warning says why).

``grpc`` and the generated modules are imported here only, lazily: the CLI runs without them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.k8s.usage import SOURCE_PODRESOURCES, TopologyUsage, ZoneUsage, host_usage

log = logging.getLogger(__name__)

KUBELET_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
DEFAULT_TIMEOUT_S = 5.0


class PodResourcesError(Exception):
    """The socket is there but did not answer (or gRPC is not installed)."""


@dataclass
class _ZoneTally:
    cpus: set[int]
    devices: Counter[str]
    memory: Counter[str]


def read_podresources(socket_path: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[Any, Any]:
    """``List`` and ``GetAllocatableResources`` from the socket at ``socket_path`` (a filesystem path)."""
    try:
        import grpc

        from nodeagent.k8s.podresources_v1 import api_pb2, api_pb2_grpc
    except ImportError as exc:  # the [k8s] extra is not installed
        raise PodResourcesError(f"gRPC is not installed ({exc}); pip install 'nodeagent[k8s]'") from exc
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        try:
            listed = stub.List(api_pb2.ListPodResourcesRequest(), timeout=timeout)
            allocatable = stub.GetAllocatableResources(api_pb2.AllocatableResourcesRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            raise PodResourcesError(f"{socket_path}: {getattr(code, 'name', code)}: "
                                    f"{exc.details() if hasattr(exc, 'details') else exc}") from exc
    return listed, allocatable


def _first_node(topology: Any) -> int | None:
    nodes = [n.ID for n in topology.nodes] if topology is not None else []
    return min(nodes) if nodes else None


def usage_from_podresources(listed: Any, allocatable: Any, inv: Inventory) -> TopologyUsage:
    """Per-zone allocations and the pods' names from the two responses."""
    cpu_zone = {cpu: node.id for node in inv.numa for cpu in node.cpus}
    device_zone: dict[tuple[str, str], int] = {}
    for dev in allocatable.devices:
        node = _first_node(dev.topology if dev.HasField("topology") else None)
        if node is not None:
            for device_id in dev.device_ids:
                device_zone[(dev.resource_name, device_id)] = node
    tallies: dict[int, _ZoneTally] = {n.id: _ZoneTally(set(), Counter(), Counter()) for n in inv.numa}
    pods: list[tuple[str, str]] = []
    taken_cpus: set[int] = set()
    for pod in listed.pod_resources:
        pods.append((pod.namespace, pod.name))
        for container in pod.containers:
            taken_cpus.update(container.cpu_ids)
            _tally_devices(tallies, container.devices, device_zone)
            _tally_memory(tallies, container.memory)
        taken_cpus.update(pod.cpu_ids)  # pod-level and container-level overlap by design: a set
    for cpu in taken_cpus:
        if (zone := cpu_zone.get(cpu)) is not None:
            tallies[zone].cpus.add(cpu)
    zones = {zone: ZoneUsage(frozenset(t.cpus), Counter(t.devices), dict(t.memory)) for zone, t in tallies.items()}
    allocatable_cpus = frozenset(allocatable.cpu_ids) if allocatable.cpu_ids else None
    return TopologyUsage(SOURCE_PODRESOURCES, zones=zones, pods=tuple(pods), allocatable_cpus=allocatable_cpus)


def _tally_devices(tallies: dict[int, _ZoneTally], devices: Iterable[Any],
                   device_zone: dict[tuple[str, str], int]) -> None:
    for dev in devices:
        own = _first_node(dev.topology if dev.HasField("topology") else None)
        for device_id in dev.device_ids:
            zone = device_zone.get((dev.resource_name, device_id), own)
            if zone in tallies:
                tallies[zone].devices[dev.resource_name] += 1


def _tally_memory(tallies: dict[int, _ZoneTally], blocks: Iterable[Any]) -> None:
    for block in blocks:
        zone = _first_node(block.topology if block.HasField("topology") else None)
        if zone in tallies:
            tallies[zone].memory[block.memory_type] += int(block.size)


def gather_usage(host: Host, inv: Inventory, *, socket: str = KUBELET_SOCKET,
                 timeout: float = DEFAULT_TIMEOUT_S) -> TopologyUsage:
    """The podresources view when the kubelet's socket exists under the host's root, else live host facts."""
    if host.exists(socket):
        try:
            listed, allocatable = read_podresources(host.fs_path(socket), timeout=timeout)
        except PodResourcesError as exc:
            log.warning("kubelet podresources unavailable (%s); NodeResourceTopology available from host facts", exc)
        else:
            return usage_from_podresources(listed, allocatable, inv)
    return host_usage(host, inv)


def live_usage(inv: Inventory) -> TopologyUsage:
    """What the publisher uses: the kubelet's podresources socket under the Inventory's root, else host facts."""
    return gather_usage(Host(inv.root), inv)
