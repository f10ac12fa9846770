"""NICs backed by a device: driver, NUMA node, SR-IOV (PF and VFs) and link state.

Link state comes from the kernel's operstate. A long-lived process (``serve``) asks over netlink
with pyroute2; one-shot commands read the same field from sysfs unless asked otherwise, because
importing pyroute2 alone costs more than the whole of ``inspect``'s discovery.
"""

from __future__ import annotations

import logging
import re

from nodeagent.host import Host
from nodeagent.inventory import Nic

log = logging.getLogger(__name__)
NET_DIR = "/sys/class/net"
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def _pci_address(real: str | None) -> str | None:
    """The PCI function a NIC sits on: the nearest PCI address in its device path (virtio too)."""
    for part in reversed((real or "").split("/")):
        if _PCI_ADDRESS.match(part):
            return part
    return None


def _link_states(host: Host) -> dict[str, bool]:
    if not host.live_source("netlink"):
        return {}
    try:
        from pyroute2 import IPRoute
    except ImportError:
        host.skip("netlink", "pyroute2 is not installed")
        return {}
    states: dict[str, bool] = {}
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                states[link.get_attr("IFLA_IFNAME")] = link.get_attr("IFLA_OPERSTATE") == "UP"
    except OSError as exc:
        log.warning("netlink link dump failed: %s", exc)
    return states


def _sysfs_link_up(operstate: str | None) -> bool | None:
    if operstate in ("up", "down", "lowerlayerdown", "notpresent", "dormant"):
        return operstate == "up"
    return None  # "unknown" (many virtual and some physical drivers) or absent


def discover_nics(host: Host, *, netlink: bool = False) -> list[Nic]:
    nics: list[Nic] = []
    links: dict[str, bool] | None = None
    for name in host.listdir(NET_DIR):
        base = f"{NET_DIR}/{name}"
        device = f"{base}/device"
        real = host.realpath(device)
        if real is None and not host.exists(device):
            continue  # lo, bridges, veths, bonds: no hardware behind them
        if links is None:
            links = _link_states(host) if netlink else {}
        address = _pci_address(real)
        pci = f"/sys/bus/pci/devices/{address}" if address else device
        total_vfs = host.read_int(f"{pci}/sriov_totalvfs")
        # virtfnN links sit beside sriov_totalvfs: both exist only on an SR-IOV physical function
        # (drivers/pci/iov.c), so a VF or a plain NIC is not listed (a 1024-CPU host has 372 VFs).
        vfs = [] if total_vfs is None else [
            host.link_name(f"{pci}/{e}") or "" for e in host.listdir(pci) if e.startswith("virtfn")]
        numa = host.read_int(f"{pci}/numa_node")
        speed = host.read_int(f"{base}/speed")
        operstate = host.read_str(f"{base}/operstate")
        nics.append(Nic(
            name=name,
            address=address,
            driver=host.link_name(f"{device}/driver"),
            numa_node=None if numa is None or numa < 0 else numa,
            mac=host.read_str(f"{base}/address"),
            operstate=operstate,
            speed_mbps=None if speed is None or speed < 0 else speed,
            mtu=host.read_int(f"{base}/mtu"),
            sriov_totalvfs=total_vfs,
            sriov_numvfs=host.read_int(f"{pci}/sriov_numvfs"),
            vfs=sorted(v for v in vfs if v),
            physfn=host.link_name(f"{pci}/physfn"),
            link_up=links.get(name, _sysfs_link_up(operstate)),
        ))
    return nics
